//! The Docker engine, as the docker CLI finds it: `DOCKER_HOST` (`unix://`, `tcp://`,
//! with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` for TLS), else the local socket. The
//! API version is negotiated, so older engines (API 1.41) work. Every error names the
//! engine's address; an engine that cannot be reached is an environment problem
//! (exit code 3), not a failed deployment.

mod context;
mod ignore;

use std::time::Duration;

use bollard::Docker;

pub use context::{BuildContext, Packed, pack};
pub use ignore::DockerIgnore;

use super::ActionError;

/// The address the docker CLI would use when none is given.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// A long request timeout: a build or an image export can take many minutes, and the
/// node's own `timeout` is what bounds an action.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// A connected engine and the address it was reached at.
#[derive(Clone, Debug)]
pub struct Engine {
    pub docker: Docker,
    pub address: String,
}

/// The engine address: the parameter, else `DOCKER_HOST`, else the default socket.
/// A bare path is taken as a unix socket.
pub fn address(given: Option<&str>) -> String {
    let host = given
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    if host.starts_with('/') { format!("unix://{host}") } else { host }
}

/// Whether TLS applies to this address (as the docker CLI decides it).
fn uses_tls(address: &str) -> bool {
    address.starts_with("https://")
        || (address.starts_with("tcp://") && std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty()))
}

impl Engine {
    /// Connects and negotiates the API version.
    pub async fn connect(given: Option<&str>) -> Result<Engine, ActionError> {
        let address = address(given);
        let docker = if uses_tls(&address) {
            let certs = cert_path();
            let files = [certs.join("key.pem"), certs.join("cert.pem"), certs.join("ca.pem")];
            if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                return Err(environment(format!(
                    "cannot reach the Docker engine at {address}: TLS is on (DOCKER_TLS_VERIFY) but `{}` does not exist; \
                     set DOCKER_CERT_PATH to the folder holding ca.pem, cert.pem and key.pem",
                    missing.display()
                )));
            }
            let tcp = address.replacen("https://", "tcp://", 1);
            Docker::connect_with_ssl(
                &tcp,
                &files[0],
                &files[1],
                &files[2],
                REQUEST_TIMEOUT.as_secs(),
                bollard::API_DEFAULT_VERSION,
            )
        } else if address.starts_with("tcp://") || address.starts_with("http://") {
            Docker::connect_with_http(&address, REQUEST_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
        } else if address.starts_with("unix://") {
            Docker::connect_with_unix(&address, REQUEST_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
        } else {
            return Err(environment(format!(
                "cannot reach the Docker engine at `{address}`: DOCKER_HOST must be unix:///path, tcp://host:port \
                 or https://host:port"
            )));
        }
        .map_err(|e| unreachable(&address, &e))?;
        let docker = docker.negotiate_version().await.map_err(|e| unreachable(&address, &e))?;
        Ok(Engine { docker, address })
    }

    /// An error of a call to this engine: unreachable (environment) or refused.
    pub fn error(&self, what: &str, e: bollard::errors::Error) -> ActionError {
        if is_transport(&e) {
            unreachable(&self.address, &e)
        } else {
            ActionError::new(format!("{what}: {}", describe(&e)))
        }
    }
}

/// A container of a service, as listed by the engine.
#[derive(Debug, Clone)]
pub struct ContainerRef {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub state: String,
    /// The image as the container was created from it (tag or id).
    pub image: String,
}

impl Engine {
    /// Stops (`grace` seconds before SIGKILL) and removes a container with its
    /// anonymous volumes. False when there was no such container.
    pub async fn remove(&self, name: &str, grace: i32) -> Result<bool, ActionError> {
        use bollard::query_parameters::{RemoveContainerOptions, StopContainerOptions};
        let stop = StopContainerOptions { t: Some(grace), signal: None };
        match self.docker.stop_container(name, Some(stop)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(false),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(e) if is_transport(&e) => return Err(self.error(&format!("cannot stop container `{name}`"), e)),
            Err(_) => {} // removal with force settles it
        }
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            // 409: removal already in progress (a concurrent remove, or autoremove).
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(true),
            Err(e) => Err(self.error(&format!("cannot remove container `{name}`"), e)),
        }
    }

    /// Every container (running or not) labelled as belonging to `service`.
    pub async fn containers_of(&self, service: &str) -> Result<Vec<ContainerRef>, ActionError> {
        let filters =
            std::collections::HashMap::from([("label".to_string(), vec![format!("{}={service}", labels::SERVICE)])]);
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error(&format!("cannot list the containers of `{service}`"), e))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerRef {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                image: c.image.unwrap_or_default(),
            })
            .collect())
    }

    /// The last `lines` lines a container printed (stdout and stderr), best effort.
    pub async fn logs_tail(&self, name: &str, lines: usize) -> String {
        use futures_util::StreamExt;
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(name, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&chunk.to_string());
        }
        text
    }
}

fn cert_path() -> std::path::PathBuf {
    match std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        Some(path) => path.into(),
        None => std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default().join(".docker"),
    }
}

fn environment(message: String) -> ActionError {
    ActionError::new(message).environment()
}

fn unreachable(address: &str, e: &bollard::errors::Error) -> ActionError {
    let hint = if address.starts_with("unix://") {
        "is dockerd running, and may this user use its socket? Or set DOCKER_HOST to the engine's address"
    } else {
        "is the engine listening there? With TLS, set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"
    };
    environment(format!("cannot reach the Docker engine at {address}: {} ({hint})", describe(e)))
}

/// Errors that mean the engine did not answer (as opposed to answering "no").
fn is_transport(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        e,
        E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::RequestTimeoutError
            | E::SocketNotFoundError(_)
            | E::HttpClientError { .. }
    )
}

/// The engine's own message, without bollard's wrapping.
pub fn describe(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError { status_code, message } => format!("{message} (HTTP {status_code})"),
        E::DockerStreamError { error } => error.clone(),
        E::HyperLegacyError { err } => super::with_causes(err.to_string(), err),
        other => other.to_string(),
    }
}

/// Whether an error is the engine saying "no such object".
pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// Labels Phased puts on what it creates.
pub mod labels {
    pub const DEPLOYMENT: &str = "phased.deployment";
    pub const SERVICE: &str = "phased.service";
    pub const NODE: &str = "phased.node";
    /// A digest of the container's configuration: a rerun reuses a container only when
    /// it was made from the same configuration.
    pub const CONFIG: &str = "phased.config";
}

/// Whether the engine has `image` (for `phased rollback`, before anything starts):
/// `Err` when the engine cannot be asked.
pub async fn has_image(docker_host: Option<&str>, image: &str) -> Result<bool, String> {
    let engine = Engine::connect(docker_host).await.map_err(|e| e.message)?;
    match engine.docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(format!("cannot ask the Docker engine at {} about image `{image}`: {e}", engine.address)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_path_is_a_unix_socket_and_the_parameter_wins() {
        assert_eq!(address(Some("/run/docker.sock")), "unix:///run/docker.sock");
        assert_eq!(address(Some("tcp://10.0.0.1:2376")), "tcp://10.0.0.1:2376");
    }

    #[tokio::test]
    async fn an_absent_socket_is_an_environment_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let err = Engine::connect(Some(&format!("unix://{}", socket.display()))).await.unwrap_err();
        assert!(err.environment, "{err:?}");
        assert!(err.message.contains(&socket.display().to_string()), "{}", err.message);
        assert!(err.message.contains("is dockerd running"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_closed_tcp_port_is_an_environment_error_naming_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = Engine::connect(Some(&format!("tcp://127.0.0.1:{port}"))).await.unwrap_err();
        assert!(err.environment, "{err:?}");
        assert!(err.message.contains(&format!("tcp://127.0.0.1:{port}")), "{}", err.message);
    }
}
