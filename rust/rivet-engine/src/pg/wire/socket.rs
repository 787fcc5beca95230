//! Opening a PostgreSQL connection's socket and settling encryption (SSLRequest).

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::error::Result;
use crate::net::{self, Channel, Socket, connect_error};
use crate::pg::connect::ConnectParams;
use crate::tls::TlsMode;

/// Ask the server for TLS; `true` if it agreed.
fn request_tls(stream: &mut TcpStream) -> Result<bool> {
    // SSLRequest: length 8, code 80877103.
    stream.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .map_err(|e| connect_error(format!("TLS negotiation failed: {e}")))?;
    match answer[0] {
        b'S' => Ok(true),
        b'N' => Ok(false),
        other => Err(connect_error(format!(
            "unexpected answer to the TLS request: {other:#x}"
        ))),
    }
}

/// Open the socket and settle encryption as the TLS mode requires; how it ended up protected.
pub fn open(params: &ConnectParams) -> Result<(Socket, Channel)> {
    if params.host.starts_with('/') {
        let path = format!(
            "{}/.s.PGSQL.{}",
            params.host.trim_end_matches('/'),
            params.port
        );
        return Ok((Socket::Unix(net::unix(&path)?), Channel::Unix));
    }
    let (dial_host, dial_port) = params.dial_address();
    let mut stream = net::tcp(
        dial_host,
        dial_port,
        params.connect_timeout,
        params.keepalive,
    )?;
    let Some(config) = params.tls.client_config()? else {
        return Ok((Socket::Tcp(stream), Channel::Plain));
    };
    stream.set_read_timeout(Some(params.connect_timeout))?;
    if !request_tls(&mut stream)? {
        if params.tls.mode == TlsMode::Prefer {
            stream.set_read_timeout(None)?;
            return Ok((Socket::Tcp(stream), Channel::Plain));
        }
        return Err(connect_error(format!(
            "the server at {}:{} does not accept TLS, and TLS mode is {:?}",
            params.host, params.port, params.tls.mode
        )));
    }
    let socket = net::upgrade_tls(stream, &params.host, config, params.connect_timeout)?;
    Ok((socket, params.tls.channel()))
}
