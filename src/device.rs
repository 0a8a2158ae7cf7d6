//! Which processor runs the numeric work.
//!
//! `auto` picks CUDA only when the crate was built with the `cuda` feature *and* the driver and
//! NVRTC libraries load *and* a device answers; otherwise it says once on stderr that it falls
//! back to the CPU. `cuda` never falls back: a missing GPU is an error.

use std::fmt;
use std::str::FromStr;
use std::sync::Once;

use crate::error::{Error, Result};

/// What the user asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRequest {
    /// CUDA when usable, otherwise the CPU (with a note on stderr).
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device with this ordinal; an error when unusable.
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(ordinal)) => Ok(DeviceRequest::Cuda(ordinal)),
                _ => Err(Error::invalid(format!(
                    "unknown device `{s}`: expected auto, cpu, cuda or cuda:N"
                ))),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("auto"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The processor that actually runs; recorded in every output manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The CPU (rayon threads).
    Cpu,
    /// A CUDA device ordinal.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// True when the binary was built with the `cuda` feature (a compile-time fact, not a probe).
pub const fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// Resolves a request to a usable device.
pub fn resolve(request: DeviceRequest) -> Result<Device> {
    match request {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Cuda(ordinal) => {
            probe_cuda(ordinal)?;
            Ok(Device::Cuda(ordinal))
        }
        DeviceRequest::Auto => match probe_cuda(0) {
            Ok(()) => Ok(Device::Cuda(0)),
            Err(why) => {
                static SAID: Once = Once::new();
                SAID.call_once(|| eprintln!("note: falling back to the CPU ({why})"));
                Ok(Device::Cpu)
            }
        },
    }
}

/// Checks that CUDA device `ordinal` can be used, without ever letting cudarc panic.
pub fn probe_cuda(ordinal: usize) -> Result<()> {
    probe::probe(ordinal)
}

#[cfg(feature = "cuda")]
mod probe {
    use crate::error::{Error, Result};

    pub fn probe(ordinal: usize) -> Result<()> {
        // SAFETY: these only try to dlopen the libraries; cudarc panics on first use when they are
        // absent, so we must ask before creating any context.
        let driver = unsafe { cudarc::driver::sys::is_culib_present() };
        if !driver {
            return Err(Error::Cuda(
                "the CUDA driver library (libcuda.so.1) is not present".into(),
            ));
        }
        let nvrtc = unsafe { cudarc::nvrtc::sys::is_culib_present() };
        if !nvrtc {
            return Err(Error::Cuda(
                "NVRTC (libnvrtc.so.13) is not present; add the CUDA library folder to LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let count = cudarc::driver::CudaContext::device_count()
            .map_err(|e| Error::Cuda(format!("cannot count devices: {e}")))?;
        if ordinal >= count as usize {
            return Err(Error::Cuda(format!(
                "device {ordinal} requested but {count} device(s) present"
            )));
        }
        Ok(())
    }
}

#[cfg(not(feature = "cuda"))]
mod probe {
    use crate::error::{Error, Result};

    pub fn probe(_ordinal: usize) -> Result<()> {
        Err(Error::Cuda(
            "support not compiled in; rebuild with `--features cuda`".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(
            "auto".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Auto
        );
        assert_eq!("cpu".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(3)
        );
        assert!("gpu".parse::<DeviceRequest>().is_err());
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(resolve(DeviceRequest::Cpu).unwrap(), Device::Cpu);
    }
}
