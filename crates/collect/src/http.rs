//! The HTTP client every outgoing call uses (scrapes, the remote store, webhooks): one
//! place for time-outs, status handling and TLS. HTTPS needs the `tls` feature
//! (rustls with the Mozilla root certificates, or a configured CA file; a client
//! certificate where the server asks for one).

use std::path::Path;
use std::time::Duration;

/// Whether this build speaks HTTPS.
pub const TLS: bool = cfg!(feature = "tls");

/// The TLS files of one endpoint, each a PEM file: the CA to check the server's
/// certificate against instead of the public roots, and a client certificate (its chain)
/// with its private key, for servers that ask the client for one (mutual TLS: an API
/// server set up with kubeadm, an exporter behind an mTLS proxy).
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFiles<'a> {
    /// The CA's certificates.
    pub ca_file: Option<&'a Path>,
    /// The client certificate chain and its private key.
    pub client: Option<(&'a Path, &'a Path)>,
}

impl TlsFiles<'_> {
    /// Whether any file is set.
    pub fn any(&self) -> bool {
        self.ca_file.is_some() || self.client.is_some()
    }
}

/// An agent with a time-out on the whole call that returns non-2xx answers instead of
/// failing on them, using `tls`'s files (see [`TlsFiles`]). Errors name the file and
/// what is wrong with it.
pub fn agent(timeout: Duration, tls: TlsFiles<'_>) -> Result<ureq::Agent, String> {
    agent_with(timeout, None, tls)
}

/// [`agent`], giving up sooner on a connection not made within `connect` (an address
/// nobody answers at), where a call may take `timeout` once connected.
pub fn agent_with(
    timeout: Duration,
    connect: Option<Duration>,
    tls: TlsFiles<'_>,
) -> Result<ureq::Agent, String> {
    let builder = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(connect)
        .http_status_as_error(false);
    if !tls.any() {
        return Ok(builder.build().into());
    }
    #[cfg(feature = "tls")]
    {
        let mut config = ureq::tls::TlsConfig::builder();
        if let Some(ca) = tls.ca_file {
            let certs = pem_certs(ca, "CA file")?;
            config = config.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        if let Some((cert, key)) = tls.client {
            let chain = pem_certs(cert, "client certificate file")?;
            let pem = std::fs::read(key)
                .map_err(|e| format!("cannot read the client key file {}: {e}", key.display()))?;
            let key = ureq::tls::PrivateKey::from_pem(&pem).map_err(|e| {
                format!(
                    "the client key file {} holds no PEM private key ({e})",
                    key.display()
                )
            })?;
            config = config.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
        }
        Ok(builder.tls_config(config.build()).build().into())
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = builder;
        let f = tls.ca_file.or(tls.client.map(|c| c.0)).expect("some file");
        Err(no_tls(&f.display().to_string()))
    }
}

/// The PEM certificates in `path` (`what` names it in errors): at least one.
#[cfg(feature = "tls")]
fn pem_certs(path: &Path, what: &str) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("the {what} {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "the {what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// Percent-encodes `s` for a URL's query value or path segment: RFC 3986's unreserved
/// characters kept, every other byte as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The error for an https URL or CA file in a build without TLS.
pub fn no_tls(what: &str) -> String {
    format!(
        "{what} needs HTTPS, which this build of prescale leaves out: build it with `cargo build --release --features tls`"
    )
}
