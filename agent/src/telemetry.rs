//! GPU temperature and utilization through NVML, where it can be loaded.
//!
//! NVML numbers devices its own way, so each CUDA device is matched to its
//! NVML device by UUID. No NVML (no driver, a container without it) is
//! normal: readings are simply absent, and the balancer's thermal penalty
//! does not apply.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;

pub struct Telemetry {
    nvml: Option<Nvml>,
    /// CUDA device index → NVML UUID.
    uuids: Vec<(u32, String)>,
}

impl Telemetry {
    /// Opens NVML for the given CUDA devices (index, UUID).
    pub fn open(uuids: Vec<(u32, String)>) -> Telemetry {
        let nvml = if uuids.is_empty() {
            None
        } else {
            match Nvml::init() {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::info!(error = %e, "NVML not available; no GPU temperature or utilization");
                    None
                }
            }
        };
        Telemetry { nvml, uuids }
    }

    /// Nothing to read.
    pub fn none() -> Telemetry {
        Telemetry {
            nvml: None,
            uuids: Vec::new(),
        }
    }

    /// Temperature (°C) and utilization (%) of CUDA device `index`.
    pub fn read(&self, index: u32) -> (Option<f32>, Option<f32>) {
        let Some(nvml) = &self.nvml else {
            return (None, None);
        };
        let Some((_, uuid)) = self.uuids.iter().find(|(i, _)| *i == index) else {
            return (None, None);
        };
        let Ok(device) = nvml.device_by_uuid(uuid.as_str()) else {
            return (None, None);
        };
        let temperature = device
            .temperature(TemperatureSensor::Gpu)
            .ok()
            .map(|t| t as f32);
        let utilization = device.utilization_rates().ok().map(|u| u.gpu as f32);
        (temperature, utilization)
    }
}

/// A CUDA UUID in NVML's text form: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        hex[0..4].concat(),
        hex[4..6].concat(),
        hex[6..8].concat(),
        hex[8..10].concat(),
        hex[10..16].concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_print_like_nvml_and_absence_reads_nothing() {
        let bytes: [u8; 16] = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(
            uuid_text(&bytes),
            "GPU-12345678-9abc-def0-0123-456789abcdef"
        );
        assert_eq!(Telemetry::none().read(0), (None, None));
        assert_eq!(Telemetry::open(vec![]).read(0), (None, None));
    }
}
