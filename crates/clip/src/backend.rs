//! Choosing where tensors live: `flex` (CPU, default), `wgpu` (Vulkan/Metal natively, WebGPU in the
//! browser), `cuda` (opt-in feature).
use burn::tensor::Device;

use crate::ClipError;

/// A compute backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend.
    Flex,
    /// GPU through wgpu (Vulkan, Metal, DX12; WebGPU in browsers).
    Wgpu,
    /// NVIDIA CUDA.
    Cuda,
}

impl Backend {
    /// Parses `flex`/`cpu`, `wgpu`/`vulkan`/`gpu`, `cuda`.
    pub fn parse(s: &str) -> Result<Self, ClipError> {
        match s.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(Self::Flex),
            "wgpu" | "vulkan" | "gpu" | "webgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(ClipError::Backend(format!("unknown backend `{other}`: expected flex, wgpu or cuda"))),
        }
    }

    /// Backends compiled into this build.
    pub fn available() -> Vec<Self> {
        let mut v = Vec::new();
        if cfg!(feature = "flex") {
            v.push(Self::Flex);
        }
        if cfg!(feature = "wgpu") {
            v.push(Self::Wgpu);
        }
        if cfg!(feature = "cuda") {
            v.push(Self::Cuda);
        }
        v
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }
}

/// A device of the chosen backend, or an error saying how to get it.
pub fn device_for(backend: Backend) -> Result<Device, ClipError> {
    match backend {
        #[cfg(feature = "flex")]
        Backend::Flex => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Ok(Device::cuda(0)),
        #[allow(unreachable_patterns)]
        other => Err(ClipError::Backend(format!(
            "this build has no `{}` backend; rebuild with `--features {}`{}",
            other.name(),
            other.name(),
            if other == Backend::Cuda { " (it downloads an LLVM bundle at build time)" } else { "" }
        ))),
    }
}
