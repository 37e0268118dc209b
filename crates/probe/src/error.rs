//! Errors of the probe engine. A closed or stealth port is a result, never an error.

use std::io;

/// Why probing could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// SYN mode needs raw sockets (root or CAP_NET_RAW).
    #[error(
        "SYN mode needs raw sockets: run as root or grant CAP_NET_RAW (setcap cap_net_raw+ep), or use --mode connect"
    )]
    NotPrivileged,
    /// Too many scans are running in one engine.
    #[error("the engine is running its maximum of {0} scans")]
    Busy(usize),
    /// The engine thread has stopped.
    #[error("the probe engine has stopped")]
    Stopped,
    /// The target's address family is not supported in this mode.
    #[error("{0}")]
    Unsupported(&'static str),
    /// No route or source address for the target.
    #[error("no route to {target}: {source}")]
    NoRoute {
        /// The target.
        target: std::net::IpAddr,
        /// The system's answer.
        source: io::Error,
    },
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The system's answer.
        source: io::Error,
    },
}
