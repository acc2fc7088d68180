//! The ceiling: a minimal echo server on a raw tokio `TcpStream`, to show
//! what "one read + one write per batch" costs on this machine.
//!
//! The opening handshake is done by hand with the
//! `silverback_proto::handshake` helpers. Then, in a loop: one read into
//! the input buffer; every complete frame in it is parsed
//! (`silverback_proto::frame::decode_header`), unmasked
//! (`silverback_proto::mask::apply_mask`) straight into one output buffer
//! as an unmasked server frame, its UTF-8 checked for text
//! (`std::str::from_utf8`); and all the replies of the batch go out with
//! one write. Ping gets Pong, Close is echoed and the connection closed.
//! Fragmented messages are reassembled and echoed as one frame. No
//! extensions, no subprotocols, no timeouts: nothing but the echo.
//!
//! Usage: `ceiling-echo 127.0.0.1:PORT` (any path is accepted).

use bytes::{Buf as _, BytesMut};
use silverback_proto::frame::{decode_header, encode_header, Decoded, FrameHeader, OpCode};
use silverback_proto::handshake::server::{
    accept_response, parse_request, validate_request, write_response,
};
use silverback_proto::handshake::HeadLimits;
use silverback_proto::mask::apply_mask;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Bytes asked of each read (more when a larger frame is pending).
const READ_CHUNK: usize = 64 * 1024;
/// Largest message accepted (as tungstenite and fastwebsockets: 64 MiB).
const MAX_MESSAGE: u64 = 64 << 20;

/// A message being reassembled from fragments: its opcode and payload.
struct Fragments {
    opcode: OpCode,
    payload: Vec<u8>,
}

/// Appends an unmasked server frame to `out`; returns where its payload
/// starts.
fn push_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) -> usize {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: None,
        payload_len: len as u64,
    };
    encode_header(out, &header);
    out.len()
}

/// Appends a complete message (text checked for UTF-8) as one frame.
fn push_message(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) -> Result<(), u16> {
    if opcode == OpCode::Text && std::str::from_utf8(payload).is_err() {
        return Err(1007);
    }
    push_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
    Ok(())
}

/// What the batch asks of the connection.
enum Next {
    /// Read more: at least this many more bytes are needed for the next
    /// frame.
    Read(usize),
    /// Write the output, then close the connection.
    Close,
}

/// Parses every complete frame of `input`, appending the replies to `out`.
/// On a protocol violation, appends a Close with the status code and asks
/// to close.
fn process(input: &mut BytesMut, out: &mut Vec<u8>, frags: &mut Option<Fragments>) -> Next {
    match process_frames(input, out, frags) {
        Ok(next) => next,
        Err(code) => {
            push_header(out, OpCode::Close, 2);
            out.extend_from_slice(&code.to_be_bytes());
            Next::Close
        }
    }
}

fn process_frames(
    input: &mut BytesMut,
    out: &mut Vec<u8>,
    frags: &mut Option<Fragments>,
) -> Result<Next, u16> {
    loop {
        let (h, hlen) = match decode_header(input) {
            Ok(Decoded::Header(h, n)) => (h, n),
            Ok(Decoded::Incomplete(n)) => return Ok(Next::Read(n)),
            Err(_) => return Err(1002),
        };
        // Clients mask; no extension was negotiated.
        let key = h.mask.ok_or(1002u16)?;
        if h.rsv != 0 {
            return Err(1002);
        }
        if h.payload_len > MAX_MESSAGE {
            return Err(1009);
        }
        let len = h.payload_len as usize;
        if input.len() < hlen + len {
            return Ok(Next::Read(hlen + len - input.len()));
        }
        let payload = &input[hlen..hlen + len];
        match h.opcode {
            OpCode::Text | OpCode::Binary if frags.is_some() => return Err(1002),
            OpCode::Text | OpCode::Binary if h.fin => {
                // Unmask straight into the reply.
                let start = out.len();
                let at = push_header(out, h.opcode, len);
                out.extend_from_slice(payload);
                apply_mask(&mut out[at..], key);
                if h.opcode == OpCode::Text && std::str::from_utf8(&out[at..]).is_err() {
                    out.truncate(start);
                    return Err(1007);
                }
            }
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let f = match (frags.as_mut(), h.opcode) {
                    (None, OpCode::Continuation) => return Err(1002),
                    (Some(f), _) => f,
                    (None, opcode) => frags.insert(Fragments {
                        opcode,
                        payload: Vec::new(),
                    }),
                };
                if (f.payload.len() + len) as u64 > MAX_MESSAGE {
                    return Err(1009);
                }
                let at = f.payload.len();
                f.payload.extend_from_slice(payload);
                apply_mask(&mut f.payload[at..], key);
                if h.fin {
                    let f = frags.take().expect("fragments");
                    push_message(out, f.opcode, &f.payload)?;
                }
            }
            OpCode::Ping => {
                let at = push_header(out, OpCode::Pong, len);
                out.extend_from_slice(payload);
                apply_mask(&mut out[at..], key);
            }
            OpCode::Pong => {}
            OpCode::Close => {
                // Echo the status code (RFC 6455 §5.5.1), then close.
                let mut code = [0u8; 2];
                let echo = match len {
                    0 => &code[..0],
                    1 => return Err(1002),
                    _ => {
                        code.copy_from_slice(&payload[..2]);
                        apply_mask(&mut code, key);
                        &code[..]
                    }
                };
                push_header(out, OpCode::Close, echo.len());
                out.extend_from_slice(echo);
                input.advance(hlen + len);
                return Ok(Next::Close);
            }
        }
        input.advance(hlen + len);
    }
}

/// Reads the upgrade request and answers it; returns the bytes read past
/// the request head, or `None` if the connection is refused or gone.
async fn handshake(tcp: &mut TcpStream) -> std::io::Result<Option<BytesMut>> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut out = Vec::with_capacity(256);
    let req = loop {
        match parse_request(&buf, HeadLimits::default()) {
            Ok(Some((req, n))) => {
                buf.advance(n);
                break req;
            }
            Ok(None) => {
                buf.reserve(1024);
                if tcp.read_buf(&mut buf).await? == 0 {
                    return Ok(None);
                }
            }
            Err(rejection) => {
                write_response(&rejection.to_response(), &mut out);
                tcp.write_all(&out).await?;
                return Ok(None);
            }
        }
    };
    let accepted = validate_request(&req)
        .and_then(|up| accept_response(&up.key, None, None).map(|r| r.map(|()| "")));
    match accepted {
        Ok(resp) => {
            write_response(&resp, &mut out);
            tcp.write_all(&out).await?;
            Ok(Some(buf))
        }
        Err(rejection) => {
            write_response(&rejection.to_response(), &mut out);
            tcp.write_all(&out).await?;
            Ok(None)
        }
    }
}

async fn handle(mut tcp: TcpStream) -> std::io::Result<()> {
    let Some(mut input) = handshake(&mut tcp).await? else {
        return Ok(());
    };
    let mut out = Vec::new();
    let mut frags = None;
    let mut next = process(&mut input, &mut out, &mut frags);
    loop {
        if !out.is_empty() {
            tcp.write_all(&out).await?;
            out.clear();
        }
        let need = match next {
            Next::Close => break,
            Next::Read(need) => need,
        };
        if input.is_empty() {
            // An idle connection holds no read buffer until data comes.
            tcp.readable().await?;
        }
        input.reserve(READ_CHUNK.max(need));
        if tcp.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        next = process(&mut input, &mut out, &mut frags);
    }
    tcp.shutdown().await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9003".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("ceiling-echo listening on {addr}");
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let _ = handle(tcp).await;
        });
    }
}
