//! Serving HTTPS (`[server] cert_file` and `key_file`, with the `tls` feature): rustls
//! over the TCP listener. Handshakes run each in a task of its own, with a time limit,
//! so a client that connects and says nothing holds up no one; the certificate is read
//! again at each reload ([`Tls::reload`]) and new connections get the new one.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The certificate served, swapped whole by a reload.
#[derive(Clone)]
pub struct Tls(Arc<RwLock<TlsAcceptor>>);

/// A certificate read by [`Tls::read`], not served yet.
pub struct Renewed(TlsAcceptor);

/// An acceptor serving the PEM chain in `cert` with the key in `key`; the error says
/// which file is wrong and how.
fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("server.cert_file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("server.cert_file {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "server.cert_file {} holds no PEM certificate",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("server.key_file {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "server.cert_file {} and server.key_file {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Tls {
    /// Reads the certificate and key.
    pub fn new(cert: &Path, key: &Path) -> Result<Self, String> {
        Ok(Self(Arc::new(RwLock::new(acceptor(cert, key)?))))
    }

    /// Reads them again (a renewed certificate) and returns what [`Tls::put`] serves;
    /// nothing changes until then, so a reload can check every file before it changes
    /// anything.
    pub fn read(cert: &Path, key: &Path) -> Result<Renewed, String> {
        acceptor(cert, key).map(Renewed)
    }

    /// Serves `renewed` to the connections from now on.
    pub fn put(&self, renewed: Renewed) {
        *self.0.write().expect("tls lock") = renewed.0;
    }

    /// HTTPS over `tcp`, for [`crate::serve`].
    pub fn listen(&self, tcp: TcpListener) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    // The server stopped.
                    return;
                }
                let acceptor = tls.0.read().expect("tls lock").clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

/// Connections whose handshake is done, for `axum::serve`.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accepting task ended: no connection comes again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
