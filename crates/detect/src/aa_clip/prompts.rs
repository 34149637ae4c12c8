//! AA-CLIP's prompts (`spec/aa-clip.md` §3.3–§3.4, `dataset/constants.py`): 3 normal and 5
//! anomalous state phrases, 2 sentence templates, and the hand-written class "real names".
use super::Domain;

/// Normal state phrases.
pub const NORMAL_STATES: [&str; 3] = ["{}", "a {}", "the {}"];
/// Anomalous state phrases.
pub const ANOMALOUS_STATES: [&str; 5] = ["a damaged {}", "a broken {}", "a {} with flaw", "a {} with defect", "a {} with damage"];
/// Sentence templates.
pub const TEMPLATES: [&str; 2] = ["{}.", "a photo of {}."];

/// `(dataset, class, real name)` of every class the official code knows, in `CLASS_NAMES` order.
pub const REAL_NAMES: &[(&str, &str, &str)] = &[
    ("MVTec", "bottle", "dark bottle"),
    ("MVTec", "cable", "top view of three cables"),
    ("MVTec", "capsule", "black and orange capsule"),
    ("MVTec", "carpet", "gray carpet"),
    ("MVTec", "grid", "metal or plastic mesh"),
    ("MVTec", "hazelnut", "single brown hazelnut"),
    ("MVTec", "leather", "brown leather"),
    ("MVTec", "metal_nut", "metal nut which has four notched edges"),
    ("MVTec", "pill", "oval white pill with small red speckles and the letters 'FF' engraved"),
    ("MVTec", "screw", "screw"),
    ("MVTec", "tile", "speckled tile surface"),
    ("MVTec", "transistor", "a three-legged transistor placed vertically"),
    ("MVTec", "toothbrush", "toothbrush head"),
    ("MVTec", "wood", "wood surface"),
    ("MVTec", "zipper", "a black zipper"),
    ("VisA", "candle", "candle"),
    ("VisA", "pcb3", "infrared sensor pcb module"),
    ("VisA", "capsules", "capsules"),
    ("VisA", "pipe_fryum", "pipe-shaped fryum"),
    ("VisA", "pcb4", "battery charging pcb module"),
    ("VisA", "macaroni2", "scattered yellow macaroni"),
    ("VisA", "pcb2", "integrated circuits board"),
    ("VisA", "chewinggum", "chewing gum"),
    ("VisA", "macaroni1", "orange macaroni"),
    ("VisA", "cashew", "cashew nut"),
    ("VisA", "fryum", "wheel-shaped fryum snack"),
    ("VisA", "pcb1", "dual ultrasonic distance sensor pcb module"),
    ("MPDD", "connector", "metal clamps with black adjustment knobs"),
    ("MPDD", "tubes", "scattered metal objects"),
    ("MPDD", "metal_plate", "blue rectangular metal plate with a notch on one side"),
    ("MPDD", "bracket_white", "white, elongated triangular metal bracket with a smooth, matte finish"),
    ("MPDD", "bracket_brown", "brown L-shaped metal bracket with smooth, glossy finish and multiple mounting holes along its arms"),
    ("MPDD", "bracket_black", "black ornamental metal bracket with spiral design attached to a rectangular frame"),
    (
        "BTAD",
        "01",
        "Bright concentric rings in neon yellow and blue tones against a dark blue background, resembling a stylized wave or energy field radiating outward.",
    ),
    ("BTAD", "02", "vertical fabric lines in warm, dusty pink and beige tones"),
    ("BTAD", "03", "oval concentric circular rings in gradient shades of blue and white"),
    ("Brain", "Brain", "scan"),
    ("Liver", "Liver", "scan"),
    ("Retina", "Retina", "scan"),
    ("Colon_clinicDB", "Colon_clinicDB", "colon endoscopy image"),
    ("Colon_colonDB", "Colon_colonDB", "colon endoscopy image"),
    ("Colon_Kvasir", "Kvasir", "colon endoscopy image"),
    ("Colon_cvc300", "CVC-300", "colon endoscopy image"),
];

/// The official `DOMAINS` table: the medical datasets use the 9×9, σ = 1.5 blur and the map-only
/// image score; everything else is industrial.
pub fn dataset_domain(dataset: &str) -> Domain {
    match dataset {
        "Brain" | "Liver" | "Retina" | "Colon_clinicDB" | "Colon_colonDB" | "Colon_Kvasir" | "Colon_cvc300" => Domain::Medical,
        _ => Domain::Industrial,
    }
}

/// How a class name became the phrase put into the prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSource {
    /// The official hand-written description of this dataset class.
    Official {
        /// The dataset the class belongs to.
        dataset: &'static str,
    },
    /// The special class `object`, used as it is (official).
    Object,
    /// Given by the caller.
    Given,
    /// Not in the official tables: the folder name with `_` replaced by spaces (a deviation from the
    /// published setup, which wrote a description for every test class).
    FolderName,
}

/// The phrase for a class and where it came from. Exact names are looked up first, then the same
/// name ignoring case.
pub fn real_name(class: &str) -> (String, NameSource) {
    if class == "object" {
        return (class.to_string(), NameSource::Object);
    }
    let found = REAL_NAMES.iter().find(|(_, c, _)| *c == class).or_else(|| REAL_NAMES.iter().find(|(_, c, _)| c.eq_ignore_ascii_case(class)));
    match found {
        Some((dataset, _, name)) => (name.to_string(), NameSource::Official { dataset }),
        None => (class.replace('_', " "), NameSource::FolderName),
    }
}

/// The domain of a known class (`None` for classes outside the official tables).
pub fn class_domain(class: &str) -> Option<Domain> {
    REAL_NAMES.iter().find(|(_, c, _)| c.eq_ignore_ascii_case(class)).map(|(dataset, _, _)| dataset_domain(dataset))
}

/// The 6 normal and 10 anomalous sentences for a real name, in the official order (each state
/// phrase with both templates).
pub fn sentences(real_name: &str) -> (Vec<String>, Vec<String>) {
    let build = |states: &[&str]| {
        states.iter().flat_map(|state| TEMPLATES.iter().map(move |t| t.replace("{}", &state.replace("{}", real_name)))).collect::<Vec<_>>()
    };
    (build(&NORMAL_STATES), build(&ANOMALOUS_STATES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_follow_the_official_construction() {
        let (normal, anomalous) = sentences("candle");
        assert_eq!(normal, ["candle.", "a photo of candle.", "a candle.", "a photo of a candle.", "the candle.", "a photo of the candle."]);
        assert_eq!(anomalous.len(), 10);
        assert_eq!(anomalous[1], "a photo of a damaged candle.");
        assert_eq!(anomalous[9], "a photo of a candle with damage.");
        let (normal, _) = sentences(&real_name("transistor").0);
        assert_eq!(normal[2], "a a three-legged transistor placed vertically.");
    }

    #[test]
    fn names_and_domains() {
        assert_eq!(real_name("bottle"), ("dark bottle".to_string(), NameSource::Official { dataset: "MVTec" }));
        assert_eq!(real_name("Kvasir").0, "colon endoscopy image");
        assert_eq!(real_name("object"), ("object".to_string(), NameSource::Object));
        assert_eq!(real_name("bottle_cap"), ("bottle cap".to_string(), NameSource::FolderName));
        assert_eq!(class_domain("Retina"), Some(Domain::Medical));
        assert_eq!(class_domain("pcb1"), Some(Domain::Industrial));
        assert_eq!(class_domain("weave"), None);
        assert_eq!(REAL_NAMES.len(), 15 + 12 + 6 + 3 + 7);
    }
}
