//! Hostile weight files (tests/fixtures/hostile, written by tools/fixtures/hostile.py) are refused
//! with an error naming the file and the problem, memory-mapped or read into memory alike.

use std::path::PathBuf;

use vlad_clip::weights::WeightFile;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hostile").join(name)
}

/// Opens `name` both ways and returns the two messages (which must agree but for the origin).
fn refusal(name: &str) -> String {
    let path = fixture(name);
    let mapped = WeightFile::open(&path, None).err().unwrap_or_else(|| panic!("{name} was accepted")).to_string();
    let bytes = std::fs::read(&path).unwrap();
    let owned = WeightFile::from_bytes(bytes, name).err().unwrap_or_else(|| panic!("{name} was accepted from bytes")).to_string();
    assert!(mapped.starts_with(&path.display().to_string()), "{mapped}");
    assert_eq!(mapped.replacen(&path.display().to_string(), name, 1), owned);
    owned
}

#[test]
fn safetensors_with_impossible_sizes_are_refused_by_name() {
    assert_eq!(
        refusal("tensor_2p40.safetensors"),
        "tensor_2p40.safetensors: tensor `w`: shape [1099511627776, 1099511627776] needs 4835703278458516698824704 bytes, \
         its data_offsets [0, 16] span 16"
    );
    assert_eq!(
        refusal("header_2p62.safetensors"),
        "header_2p62.safetensors: safetensors header declares 4611686018427387904 bytes (at most 100000000 accepted, \
         the file has 10); refused"
    );
    let err = refusal("offsets_past_end.safetensors");
    assert!(err.starts_with("offsets_past_end.safetensors: tensor `w`: shape [4] needs 16 bytes"), "{err}");
}

#[test]
fn pickles_that_run_code_or_never_end_are_refused_by_name() {
    let err = refusal("os_system.pth");
    assert!(err.contains("imports `os.system`") && err.contains("refused"), "{err}");
    let err = refusal("cyclic.pth");
    assert!(err.contains("contains itself"), "{err}");
    let err = refusal("deep.pth");
    assert!(err.contains("nest deeper than"), "{err}");
}

#[test]
fn tensors_outside_their_storage_are_refused_by_name() {
    let err = refusal("huge_view.pth");
    assert!(err.contains("`w`"), "{err}");
    let err = refusal("missing_storage.pth");
    assert!(err.contains("`w`") && err.contains("archive/data/7"), "{err}");
}
