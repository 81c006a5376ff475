//! Metric collectors. The host collector reads `/proc` and turns kernel counters into
//! rates a forecaster can use (CPU cores busy per mode, memory, disk I/O latency and
//! throughput, network bandwidth). The receivers decode what senders push: Prometheus
//! remote_write and InfluxDB line protocol (the server's write endpoints call them). The
//! scraper pulls from Prometheus exporters. The synthetic source generates realistic demand
//! (daily and weekly cycles, noise, bursts) for `prescale demo`.

pub mod host;
pub mod http;
pub mod kube;
pub mod receive;
pub mod scrape;
pub mod synthetic;

pub use host::{HostCollector, HostError};
pub use synthetic::{DemandProfile, SyntheticDemand};
