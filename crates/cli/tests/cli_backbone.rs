//! The backbone commands of the CLI contract, run as a user would, against the open_clip fixtures.
use std::path::PathBuf;
use std::process::Command;

fn vlad() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vlad"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vlad-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn read_npy(path: &PathBuf) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    (npy.shape().to_vec(), npy.into_vec::<f32>().unwrap())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{:?} failed:\n{}", cmd, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

#[test]
fn tokenize_prints_json_ids() {
    let out = run(vlad().args(["tokenize", "a photo of a cat", "x"]));
    let ids: Vec<Vec<u32>> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(&ids[0][..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
    assert_eq!(ids[0].len(), 77);
    let short = run(vlad().args(["tokenize", "--context-length", "5", "one two three four five"]));
    let ids: Vec<Vec<u32>> = serde_json::from_str(short.trim()).unwrap();
    assert_eq!(ids[0].len(), 5);
    assert_eq!(ids[0][4], 49407);
}

#[test]
fn preprocess_encode_image_and_text_match_open_clip() {
    let x = scratch("x.npy");
    run(vlad().args(["preprocess", "--image-size", "32", "--force", "--image"]).arg(fixture("image.png")).arg("--out").arg(&x));
    let (shape, got) = read_npy(&x);
    assert_eq!(shape, vec![1, 3, 32, 32]);
    let (_, want) = read_npy(&fixture("x32.npy"));
    assert!(max_rel_diff(&got, &want) < 0.02);

    let emb = scratch("emb.npy");
    let taps = scratch("taps.npy");
    run(vlad()
        .args(["encode-image", "--arch", "tiny", "--gelu", "exact", "--image-size", "32", "--taps", "1,2,3,4", "--force", "--weights"])
        .arg(fixture("tiny_openai.pt"))
        .arg("--image")
        .arg(fixture("image.png"))
        .arg("--out")
        .arg(&emb)
        .arg("--taps-out")
        .arg(&taps));
    let (shape, got) = read_npy(&emb);
    assert_eq!(shape, vec![1, 32]);
    // End to end from the PNG: PIL-exact preprocessing, so the embedding matches within the rule.
    assert!(max_rel_diff(&got, &read_npy(&fixture("exact_image_emb.npy")).1) <= 1e-4);
    let (shape, got) = read_npy(&taps);
    assert_eq!(shape, vec![4, 17, 64]);
    assert!(max_rel_diff(&got, &read_npy(&fixture("exact_taps.npy")).1) <= 1e-4);

    let text = scratch("text.npy");
    let prompts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(fixture("prompts.json")).unwrap()).unwrap();
    let mut cmd = vlad();
    cmd.args(["encode-text", "--gelu", "quick", "--force", "--weights"]).arg(fixture("tiny_hf.safetensors")).arg("--out").arg(&text);
    for p in &prompts {
        cmd.arg("--text").arg(p);
    }
    run(&mut cmd);
    let (shape, got) = read_npy(&text);
    assert_eq!(shape, vec![prompts.len() as u64, 32]);
    assert!(max_rel_diff(&got, &read_npy(&fixture("quick_text_emb.npy")).1) <= 1e-4);
}

#[test]
fn convert_inspect_and_reload() {
    let bpk = scratch("tiny.bpk");
    let _ = std::fs::remove_file(&bpk);
    run(vlad().args(["convert", "--f16", "--gelu", "quick", "--weights"]).arg(fixture("tiny_hf.safetensors")).arg("--out").arg(&bpk));
    // Never overwrite without asking.
    let again = vlad().args(["convert", "--weights"]).arg(fixture("tiny_hf.safetensors")).arg("--out").arg(&bpk).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let listing = run(vlad().arg("inspect").arg(&bpk));
    assert!(listing.contains("format: burnpack") && listing.contains("architecture: tiny"), "{listing}");
    assert!(listing.contains("visual.transformer.resblocks.0.attn.in_proj_weight"), "{listing}");
    let hf_listing = run(vlad().arg("inspect").arg(fixture("tiny_hf.safetensors")));
    assert!(hf_listing.contains("naming: HuggingFace"), "{hf_listing}");
    // The converted file carries its architecture and activation: no --arch/--gelu needed.
    let emb = scratch("emb_bpk.npy");
    run(vlad().args(["encode-image", "--force", "--weights"]).arg(&bpk).arg("--image").arg(fixture("image.png")).arg("--out").arg(&emb));
    assert!(max_rel_diff(&read_npy(&emb).1, &read_npy(&fixture("quick_image_emb.npy")).1) <= 1e-4);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let missing = vlad().args(["encode-image", "--arch", "tiny", "--weights", "/nonexistent/w.safetensors", "--image", "x.png", "--out", "o.npy"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/w.safetensors"));
    let wrong = vlad().args(["encode-text", "--arch", "ViT-B-32", "--text", "x", "--out"]).arg(scratch("never.npy")).arg("--weights").arg(fixture("tiny_openai.pt")).output().unwrap();
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success() && err.contains("visual.conv1.weight") && err.contains("--allow-partial"), "{err}");
}
