//! Discord's REST API answers a server error (5xx) now and then: its docs say "the server
//! had an error processing your request", and a 502 comes from its edge. serenity waits out
//! 429s but hands a 5xx straight back, so a notice or a reply would be lost to a hiccup.
//! Here such a request is sent again after a short wait, a few times, and only then is the
//! error the caller's. A new channel message carries a nonce Discord enforces, so a retry
//! of a post whose answer (not the post) was lost returns that message instead of a twin.

use std::future::Future;
use std::time::Duration;

use poise::serenity_prelude as serenity;

/// The waits before each new try: about 3 s in all, inside an interaction's 3 s to answer
/// for the first two.
const WAITS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(750),
    Duration::from_secs(2),
];

/// Runs `send` until it succeeds, fails with anything but a server error, or has failed
/// with one [`WAITS`]`.len() + 1` times.
pub async fn on_server_error<T, F, Fut>(what: &str, mut send: F) -> Result<T, serenity::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, serenity::Error>>,
{
    let mut waits = WAITS.iter();
    loop {
        match send().await {
            Err(e) if is_server_error(&e) => match waits.next() {
                Some(wait) => {
                    tracing::debug!(what, error = %e, "Discord failed; trying again");
                    tokio::time::sleep(*wait).await;
                }
                None => return Err(e),
            },
            result => return result,
        }
    }
}

/// Posts `message` in `channel`, again after a server error ([`on_server_error`]). The
/// message carries one nonce Discord enforces across the tries, so a try whose answer (not
/// the post) was lost returns that post instead of a twin.
pub async fn post(
    http: &serenity::Http,
    channel: u64,
    message: serenity::CreateMessage,
    what: &str,
) -> Result<serenity::Message, serenity::Error> {
    let nonce = format!("{:x}", rand::random::<u64>());
    let message = message
        .nonce(serenity::Nonce::String(nonce))
        .enforce_nonce(true);
    let channel = serenity::ChannelId::new(channel);
    on_server_error(what, || channel.send_message(http, message.clone())).await
}

/// Discord's "Invalid Webhook Token": an interaction's token works for 15 minutes, then
/// its answer can no longer be edited or followed up.
pub const EXPIRED_TOKEN: isize = 50027;

/// Discord answered 5xx.
fn is_server_error(e: &serenity::Error) -> bool {
    matches!(e, serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r))
        if r.status_code.is_server_error())
}

/// Discord's error code, when it answered with one.
pub fn code(e: &serenity::Error) -> Option<isize> {
    match e {
        serenity::Error::Http(serenity::HttpError::UnsuccessfulRequest(r)) => Some(r.error.code),
        _ => None,
    }
}
