//! WinCLIP's compositional prompt ensemble, exactly as anomalib lists it (`spec/baselines.md` §3.2):
//! 7 normal and 4 anomalous states, 21 templates (with anomalib's duplicated jpeg template), state-major.
/// Normal states.
pub const NORMAL_STATES: [&str; 7] =
    ["{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect", "{} without damage"];
/// Anomalous states.
pub const ANOMALOUS_STATES: [&str; 4] = ["damaged {}", "{} with flaw", "{} with defect", "{} with damage"];
/// anomalib's 21 templates (the jpeg "the" template appears twice; the "a" variant is missing).
pub const TEMPLATES: [&str; 21] = [
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
];

fn expand(states: &[&str], name: &str) -> Vec<String> {
    states.iter().flat_map(|s| TEMPLATES.iter().map(move |t| t.replace("{}", &s.replace("{}", name)))).collect()
}

/// (147 normal, 84 anomalous) prompts for `name`, state-major.
pub fn ensemble(name: &str) -> (Vec<String>, Vec<String>) {
    (expand(&NORMAL_STATES, name), expand(&ANOMALOUS_STATES, name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_and_order() {
        let (n, a) = super::ensemble("bottle");
        assert_eq!((n.len(), a.len()), (147, 84));
        assert_eq!(n[0], "a cropped photo of the bottle.");
        assert_eq!(n[21], "a cropped photo of the flawless bottle.");
        assert_eq!(a[83], "a photo of a bottle with damage for anomaly detection.");
    }
}
