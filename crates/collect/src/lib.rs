//! Metric collectors. So far: the host collector, which reads `/proc` and turns kernel
//! counters into rates a forecaster can use (CPU cores busy per mode, memory, disk I/O
//! latency and throughput, network bandwidth). Prometheus scrape, remote_write and
//! InfluxDB line-protocol receivers come with the collection issue. The synthetic source
//! generates realistic demand (daily and weekly cycles, noise, bursts) for `prescale demo`.

pub mod host;
pub mod synthetic;

pub use host::{HostCollector, HostError};
pub use synthetic::{DemandProfile, SyntheticDemand};
