//! `encore invite`: the OAuth2 URL that adds the bot to a server with exactly the
//! permissions it uses.
//!
//! The application id is read from the token when possible: a bot token's first segment is
//! the base64 of the bot's user id, which for bots equals the application id. `--fetch`
//! asks Discord instead (`GET /oauth2/applications/@me`), which also proves the token works.

use std::time::Duration;

use anyhow::{anyhow, Context as _};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use poise::serenity_prelude::Permissions;

use crate::config::Token;

/// What the bot needs, and nothing more: see the table in the README.
pub const PERMISSIONS: Permissions = Permissions::VIEW_CHANNEL
    .union(Permissions::SEND_MESSAGES)
    .union(Permissions::EMBED_LINKS)
    .union(Permissions::CONNECT)
    .union(Permissions::SPEAK);

/// `bot` adds the bot user; `applications.commands` lets it register slash commands.
pub const SCOPES: &[&str] = &["bot", "applications.commands"];

/// The application id encoded in a bot token's first segment, if it decodes to one.
pub fn application_id_from_token(token: &Token) -> Option<u64> {
    let first = token.expose().split('.').next()?;
    let bytes = decode_base64(first)?;
    let text = std::str::from_utf8(&bytes).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|&id| id > 0)
}

/// The invite URL for `application_id`, optionally preselecting a server.
pub fn url(application_id: u64, guild: Option<u64>) -> String {
    let mut u = format!(
        "https://discord.com/oauth2/authorize?client_id={application_id}&scope={}&permissions={}",
        SCOPES.join("+"),
        PERMISSIONS.bits()
    );
    if let Some(g) = guild {
        u.push_str(&format!("&guild_id={g}&disable_guild_select=true"));
    }
    u
}

/// One line per permission, for people who want to know what they grant.
pub fn permission_names() -> Vec<String> {
    PERMISSIONS
        .iter_names()
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Asks Discord for the application id (`GET {api_base}/api/v10/oauth2/applications/@me`).
pub async fn fetch_application_id(token: &Token, api_base: Option<&str>) -> anyhow::Result<u64> {
    let base = api_base
        .unwrap_or("https://discord.com")
        .trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("cannot build an HTTP client")?;
    let resp = client
        .get(format!("{base}/api/v10/oauth2/applications/@me"))
        .header("Authorization", format!("Bot {}", token.expose()))
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach Discord at {base}: {}", error_chain(&e)))?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(anyhow!(
            "Discord refused the token (DISCORD_TOKEN is wrong or was reset)"
        ));
    }
    if !status.is_success() {
        return Err(anyhow!(
            "Discord answered {status} to GET /oauth2/applications/@me"
        ));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| anyhow!("unreadable answer from Discord: {e}"))?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("unreadable answer from Discord: {e}"))?;
    body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("Discord's answer has no application id"))
}

/// An error and its sources on one line (reqwest's own message is terse).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s.replace('\n', " ")
}

/// Discord writes the token's first segment without padding; accept it either way.
const PADDING_OPTIONAL: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, PADDING_OPTIONAL);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, PADDING_OPTIONAL);

/// Base64 with either alphabet (standard or URL-safe), padding optional.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).or_else(|_| URL_SAFE.decode(s)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_the_documented_ones() {
        assert_eq!(PERMISSIONS.bits(), 3165184);
        let names = permission_names();
        for want in [
            "VIEW_CHANNEL",
            "SEND_MESSAGES",
            "EMBED_LINKS",
            "CONNECT",
            "SPEAK",
        ] {
            assert!(names.iter().any(|n| n == want), "{names:?}");
        }
        assert_eq!(names.len(), 5);
    }

    #[test]
    fn id_from_token() {
        // base64("1300000000000000001") without padding, as Discord writes it.
        let t = Token::parse(Some(
            "MTMwMDAwMDAwMDAwMDAwMDAwMQ.GabcDE.abcdefghijklmnopqrstuvwxyz0123",
        ))
        .unwrap();
        assert_eq!(
            application_id_from_token(&t),
            Some(1_300_000_000_000_000_001)
        );
        // A first segment that is not base64 of digits.
        let t = Token::parse(Some(
            "aGVsbG8gd29ybGQgaGk.GabcDE.abcdefghijklmnopqrstuvwxyz0123",
        ))
        .unwrap();
        assert_eq!(application_id_from_token(&t), None);
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert!(decode_base64("a.b").is_none());
        // Both alphabets: 0xfb 0xff is `+/8` in the standard one, `-_8` in the URL-safe one.
        assert_eq!(decode_base64("+/8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_base64("-_8=").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn url_shape() {
        assert_eq!(
            url(42, None),
            "https://discord.com/oauth2/authorize?client_id=42&scope=bot+applications.commands&permissions=3165184"
        );
        assert!(url(42, Some(7)).ends_with("&guild_id=7&disable_guild_select=true"));
    }
}
