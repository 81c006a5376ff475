//! Metric collectors. So far: the host collector, which reads `/proc` and turns kernel
//! counters into rates a forecaster can use (CPU cores busy per mode, memory, disk I/O
//! latency and throughput, network bandwidth). Prometheus scrape, remote_write and
//! InfluxDB line-protocol receivers come with the collection issue.

pub mod host;

pub use host::{HostCollector, HostError};
