//! The HTTP client every outgoing call uses (scrapes, the remote store, webhooks): one
//! place for time-outs, status handling and TLS. HTTPS needs the `tls` feature
//! (rustls with the Mozilla root certificates, or a configured CA file).

use std::path::Path;
use std::time::Duration;

/// Whether this build speaks HTTPS.
pub const TLS: bool = cfg!(feature = "tls");

/// An agent with a time-out on the whole call that returns non-2xx answers instead of
/// failing on them; with `ca_file`, server certificates are checked against the PEM
/// certificates in it instead of the public roots.
pub fn agent(timeout: Duration, ca_file: Option<&Path>) -> Result<ureq::Agent, String> {
    let builder = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false);
    let Some(ca) = ca_file else {
        return Ok(builder.build().into());
    };
    #[cfg(feature = "tls")]
    {
        let pem = std::fs::read(ca)
            .map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(format!("the CA file {}: {e}", ca.display())),
            }
        }
        if certs.is_empty() {
            return Err(format!(
                "the CA file {} holds no PEM certificate",
                ca.display()
            ));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
            .build();
        Ok(builder.tls_config(tls).build().into())
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = builder;
        Err(no_tls(&ca.display().to_string()))
    }
}

/// The error for an https URL or CA file in a build without TLS.
pub fn no_tls(what: &str) -> String {
    format!(
        "{what} needs HTTPS, which this build of prescale leaves out: build it with `cargo build --release --features tls`"
    )
}
