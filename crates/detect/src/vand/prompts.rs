//! VAND/APRIL-GAN's prompt ensemble (`spec/baselines.md` §4.3, the official `prompt_ensemble.py`):
//! 7 normal and 5 anomalous states × 35 templates, state-major (245 + 175 sentences per class).
//! AnomalyCLIP's ensemble helper and MVFA use the same 35 templates.

/// Normal states (WinCLIP's seven).
pub const NORMAL_STATES: [&str; 7] = crate::winclip_prompts::NORMAL_STATES;
/// Anomalous states: WinCLIP's four plus "broken {}", in the official order.
pub const ANOMALOUS_STATES: [&str; 5] = ["damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage"];
/// The 35 templates, in the official order.
pub const TEMPLATES: [&str; 35] = [
    "a bad photo of a {}.",
    "a low resolution photo of the {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a photo of my {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a photo of one {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of a large {}.",
    "a blurry photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "a dark photo of a {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
];

/// The sentences of one state group for `name`: for each state (outer), each template (inner),
/// as the official loops build them.
pub fn sentences(states: &[&str], name: &str) -> Vec<String> {
    states.iter().flat_map(|state| {
        let state = state.replace("{}", name);
        TEMPLATES.iter().map(move |t| t.replace("{}", &state))
    }).collect()
}

/// `(normal, anomalous)` sentences for the class `name` (the raw folder name, e.g. `metal_nut`).
pub fn ensemble(name: &str) -> (Vec<String>, Vec<String>) {
    (sentences(&NORMAL_STATES, name), sentences(&ANOMALOUS_STATES, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_order_and_filling() {
        let (normal, anomalous) = ensemble("metal_nut");
        assert_eq!((normal.len(), anomalous.len()), (245, 175));
        assert_eq!(normal[0], "a bad photo of a metal_nut.");
        assert_eq!(normal[35], "a bad photo of a flawless metal_nut.");
        assert_eq!(anomalous[35 + 34], "this is one broken metal_nut in the scene.");
        assert_eq!(anomalous[174], "this is one metal_nut with damage in the scene.");
    }
}
