//! Randomly initialised CLIP weights under the canonical (OpenAI) names, for demos, benchmarks
//! and timings where no pretrained file is at hand.
use std::collections::BTreeMap;

use super::Entry;
use crate::ClipConfig;

/// OpenCLIP's initialisation scales (`transformer.py`, `init_parameters`) for every tensor of
/// `config`, drawing standard normal values from `normal` (the caller's seeded generator).
pub fn random_entries(config: &ClipConfig, normal: &mut dyn FnMut() -> f64) -> BTreeMap<String, Entry> {
    let mut entries = BTreeMap::new();
    let mut draw = |name: String, shape: Vec<usize>, std: f64, entries: &mut BTreeMap<String, Entry>| {
        let n: usize = shape.iter().product();
        let values = (0..n).map(|_| (normal() * std) as f32).collect();
        entries.insert(name, Entry::from_values(shape, values));
    };
    let constant = |name: String, shape: Vec<usize>, value: f32, entries: &mut BTreeMap<String, Entry>| {
        let n: usize = shape.iter().product();
        entries.insert(name, Entry::from_values(shape, vec![value; n]));
    };
    let mut tower = |prefix: &str, width: usize, layers: usize, entries: &mut BTreeMap<String, Entry>| {
        let attn_std = (width as f64).powf(-0.5);
        let proj_std = attn_std * ((2 * layers) as f64).powf(-0.5);
        let fc_std = ((2 * width) as f64).powf(-0.5);
        for i in 0..layers {
            let p = format!("{prefix}transformer.resblocks.{i}");
            for ln in ["ln_1", "ln_2"] {
                constant(format!("{p}.{ln}.weight"), vec![width], 1.0, entries);
                constant(format!("{p}.{ln}.bias"), vec![width], 0.0, entries);
            }
            draw(format!("{p}.attn.in_proj_weight"), vec![3 * width, width], attn_std, entries);
            constant(format!("{p}.attn.in_proj_bias"), vec![3 * width], 0.0, entries);
            draw(format!("{p}.attn.out_proj.weight"), vec![width, width], proj_std, entries);
            constant(format!("{p}.attn.out_proj.bias"), vec![width], 0.0, entries);
            draw(format!("{p}.mlp.c_fc.weight"), vec![4 * width, width], fc_std, entries);
            constant(format!("{p}.mlp.c_fc.bias"), vec![4 * width], 0.0, entries);
            draw(format!("{p}.mlp.c_proj.weight"), vec![width, 4 * width], proj_std, entries);
            constant(format!("{p}.mlp.c_proj.bias"), vec![width], 0.0, entries);
        }
    };
    let (v, t, e) = (&config.vision, &config.text, config.embed_dim);
    tower("visual.", v.width, v.layers, &mut entries);
    tower("", t.width, t.layers, &mut entries);
    let scale = (v.width as f64).powf(-0.5);
    let grid = v.image_size / v.patch_size;
    draw("visual.conv1.weight".into(), vec![v.width, 3, v.patch_size, v.patch_size], ((3 * v.patch_size * v.patch_size) as f64).powf(-0.5), &mut entries);
    draw("visual.class_embedding".into(), vec![v.width], scale, &mut entries);
    draw("visual.positional_embedding".into(), vec![grid * grid + 1, v.width], scale, &mut entries);
    draw("visual.proj".into(), vec![v.width, e], scale, &mut entries);
    draw("token_embedding.weight".into(), vec![t.vocab_size, t.width], 0.02, &mut entries);
    draw("positional_embedding".into(), vec![t.context_length, t.width], 0.01, &mut entries);
    draw("text_projection".into(), vec![t.width, e], (t.width as f64).powf(-0.5), &mut entries);
    for (ln, width) in [("visual.ln_pre", v.width), ("visual.ln_post", v.width), ("ln_final", t.width)] {
        constant(format!("{ln}.weight"), vec![width], 1.0, &mut entries);
        constant(format!("{ln}.bias"), vec![width], 0.0, &mut entries);
    }
    entries.insert("logit_scale".into(), Entry::from_values(vec![], vec![(1.0f32 / 0.07).ln()]));
    entries
}
