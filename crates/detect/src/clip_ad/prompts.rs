//! CLIP-AD's prompts (`spec/clip-ad.md` §3.1, `util/prompt_ensemble.py`): 9 normal and 10 abnormal
//! states (no bare `{}`, unlike WinCLIP and VAND) × 22 templates, state-major: 198 + 220 sentences.

/// Normal states.
pub const NORMAL_STATES: [&str; 9] = [
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
    "{} without scratch",
    "{} without crack",
    "{} without contamination",
];
/// Abnormal states.
pub const ANOMALOUS_STATES: [&str; 10] = [
    "damaged {}",
    "imperfect {}",
    "blemished {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
    "{} with scratch",
    "{} with crack",
    "{} with contamination",
];
/// The 22 templates, in the official order.
pub const TEMPLATES: [&str; 22] = [
    "a cropped photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a bright photo of the {}.",
    "a dark photo of the {}.",
    "a dark photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of the {}.",
    "a photo of a {}.",
    "a photo of a large {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
    "a photo of a small {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
];

fn sentences(states: &[&str], name: &str) -> Vec<String> {
    states.iter().flat_map(|state| {
        let state = state.replace("{}", name);
        TEMPLATES.iter().map(move |t| t.replace("{}", &state))
    }).collect()
}

/// `(normal, anomalous)` sentences for the class `name` (the raw folder name).
pub fn ensemble(name: &str) -> (Vec<String>, Vec<String>) {
    (sentences(&NORMAL_STATES, name), sentences(&ANOMALOUS_STATES, name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_and_order() {
        let (n, a) = super::ensemble("pipe_fryum");
        assert_eq!((n.len(), a.len()), (198, 220));
        assert_eq!(n[0], "a cropped photo of the flawless pipe_fryum.");
        assert_eq!(a[219], "a photo of a pipe_fryum with contamination for anomaly detection.");
    }
}
