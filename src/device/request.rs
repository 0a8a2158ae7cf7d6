//! What the user asks for (`auto`, `cpu`, `cuda:N`) and what it resolves to.

use std::fmt;
use std::str::FromStr;
use std::sync::Once;

use super::probe::{cuda_compiled, probe_cuda};
use crate::error::{Error, Result};

/// What the user asked for on the command line.
///
/// Written the same way everywhere: on the command line, in configs and in manifests (`auto`,
/// `cpu`, `cuda` or `cuda:N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
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

impl TryFrom<String> for DeviceRequest {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceRequest> for String {
    fn from(d: DeviceRequest) -> String {
        d.to_string()
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

/// Resolves a request to a usable device.
///
/// `auto` on a build without CUDA is the CPU without a word (nobody asked for a GPU); `auto` on a
/// CUDA build whose GPU cannot be used says once on stderr why it runs on the CPU.
pub fn resolve(request: DeviceRequest) -> Result<Device> {
    match request {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Cuda(ordinal) => {
            probe_cuda(ordinal)?;
            Ok(Device::Cuda(ordinal))
        }
        DeviceRequest::Auto if !cuda_compiled() => Ok(Device::Cpu),
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
