//! A small SMTP server for the tests: it speaks enough SMTP (EHLO/HELO, AUTH PLAIN and LOGIN,
//! MAIL, RCPT, DATA, RSET, NOOP, QUIT) for a real client to deliver to it, keeps what it
//! received, and refuses what the tests ask it to refuse:
//! - with `credentials` set, a wrong AUTH gets 535 (and MAIL without AUTH 530);
//! - a recipient whose local part starts with `reject` gets 550, with `later` 451.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The DATA, dot-unstuffed, CRLF line ends.
    pub data: String,
    /// The user that authenticated, if any.
    pub user: Option<String>,
}

impl Received {
    /// The value of the first header `name` (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(current) = value.as_mut() {
                if line.starts_with(' ') || line.starts_with('\t') {
                    current.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }
}

#[derive(Default)]
struct Log {
    messages: Vec<Received>,
    connections: usize,
    noops: usize,
    auths: usize,
}

pub struct SmtpSink {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// Starts a sink on a free port; with `credentials`, clients must authenticate as them.
    pub async fn start(credentials: Option<(&str, &str)>) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the SMTP sink");
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let shared = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                tokio::spawn(session(stream, shared.clone(), credentials.clone()));
            }
        });
        SmtpSink { addr, log, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn messages(&self) -> Vec<Received> {
        self.log.lock().unwrap().messages.clone()
    }

    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }

    pub fn noops(&self) -> usize {
        self.log.lock().unwrap().noops
    }

    pub fn auths(&self) -> usize {
        self.log.lock().unwrap().auths
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn decode(text: &str) -> String {
    String::from_utf8(STANDARD.decode(text.trim()).unwrap_or_default()).unwrap_or_default()
}

async fn session(
    stream: TcpStream,
    log: Arc<Mutex<Log>>,
    credentials: Option<(String, String)>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut user: Option<String> = None;
    let mut mail_from = None;
    let mut rcpt_to = Vec::new();
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let check = |given_user: &str, given_password: &str| match &credentials {
            Some((u, p)) => u == given_user && p == given_password,
            None => true,
        };
        let reply: String = if upper.starts_with("EHLO") {
            "250-sink.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into()
        } else if upper.starts_with("HELO") {
            "250 sink.test\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            log.lock().unwrap().auths += 1;
            let mut encoded = command[10..].trim().to_owned();
            if encoded.is_empty() {
                write.write_all(b"334 \r\n").await?;
                encoded.clear();
                lines.read_line(&mut encoded).await?;
            }
            let plain = decode(&encoded);
            let parts: Vec<&str> = plain.split('\0').collect();
            match parts.as_slice() {
                [_, u, p] if check(u, p) => {
                    user = Some((*u).to_owned());
                    "235 2.7.0 Authentication successful\r\n".into()
                }
                _ => "535 5.7.8 Authentication credentials invalid\r\n".into(),
            }
        } else if upper.starts_with("AUTH LOGIN") {
            log.lock().unwrap().auths += 1;
            write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let mut u = String::new();
            lines.read_line(&mut u).await?;
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let mut p = String::new();
            lines.read_line(&mut p).await?;
            let (u, p) = (decode(&u), decode(&p));
            if check(&u, &p) {
                user = Some(u);
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            if credentials.is_some() && user.is_none() {
                "530 5.7.0 Authentication required\r\n".into()
            } else {
                mail_from = Some(address(&command[10..]));
                rcpt_to.clear();
                "250 2.1.0 OK\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let to = address(&command[8..]);
            if to.starts_with("reject") {
                "550 5.1.1 No such user here\r\n".into()
            } else if to.starts_with("later") {
                "451 4.3.0 Mailbox temporarily unavailable\r\n".into()
            } else {
                rcpt_to.push(to);
                "250 2.1.5 OK\r\n".into()
            }
        } else if upper == "DATA" {
            write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
            let mut data = String::new();
            loop {
                let mut line = String::new();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let received = Received {
                mail_from: mail_from.take().unwrap_or_default(),
                rcpt_to: std::mem::take(&mut rcpt_to),
                data,
                user: user.clone(),
            };
            log.lock().unwrap().messages.push(received);
            "250 2.0.0 Ok: queued\r\n".into()
        } else if upper == "RSET" {
            mail_from = None;
            rcpt_to.clear();
            "250 2.0.0 OK\r\n".into()
        } else if upper == "NOOP" {
            log.lock().unwrap().noops += 1;
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// `<a@b>` (with optional parameters after it) -> `a@b`.
fn address(text: &str) -> String {
    let text = text.trim();
    let inner = text.split_whitespace().next().unwrap_or_default();
    inner.trim_start_matches('<').trim_end_matches('>').to_owned()
}
