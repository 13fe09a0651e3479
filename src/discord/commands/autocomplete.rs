//! `/play` suggestions: titles this server played (history) and cached, matching what has
//! been typed so far.

use std::collections::HashSet;
use std::time::Duration;

use poise::serenity_prelude as serenity;

use crate::discord::bot::Context;
use crate::discord::format;

/// Most suggestions shown (Discord allows 25).
const MAX_CHOICES: usize = 10;
/// Autocomplete must answer within Discord's 3 seconds.
const DEADLINE: Duration = Duration::from_millis(2000);
/// Discord's limit for a choice's name and value.
const CHOICE_CHARS: usize = 100;

/// Suggestions for `/play`'s query.
pub async fn play_query(ctx: Context<'_>, partial: &str) -> serenity::CreateAutocompleteResponse {
    let Some(guild) = ctx.guild_id().map(|g| g.get()) else {
        return serenity::CreateAutocompleteResponse::new();
    };
    let text = partial.trim();
    // A link is already exact; nothing to suggest.
    if text.contains("://") {
        return serenity::CreateAutocompleteResponse::new();
    }
    let bot = ctx.data();
    let lookups = async {
        let history = crate::db::history::search(&bot.stores.db, guild, text, MAX_CHOICES as u32)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "history search failed");
                Vec::new()
            });
        let cached = bot
            .resolver
            .search_titles(Some(guild), text, MAX_CHOICES as u32)
            .await;
        (history, cached)
    };
    let (history, cached) = tokio::time::timeout(DEADLINE, lookups)
        .await
        .unwrap_or_default();
    let choices = choices(history.into_iter().chain(cached));
    serenity::CreateAutocompleteResponse::new().set_choices(choices)
}

/// Deduplicated (by link) choices: the title shows, the link is what gets played (the
/// title instead when the link is too long for Discord).
fn choices(found: impl Iterator<Item = (String, String)>) -> Vec<serenity::AutocompleteChoice> {
    let mut seen = HashSet::new();
    found
        .filter(|(title, url)| !title.trim().is_empty() && seen.insert(url.clone()))
        .take(MAX_CHOICES)
        .map(|(title, url)| {
            let name = format::trim(title.trim(), CHOICE_CHARS - 1);
            let value = if url.chars().count() <= CHOICE_CHARS {
                url
            } else {
                title.trim().chars().take(CHOICE_CHARS).collect()
            };
            serenity::AutocompleteChoice::new(name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_unique_short_and_play_the_link() {
        let long_url = format!("https://example.com/{}", "x".repeat(200));
        let found = vec![
            ("Blue Monday".to_string(), "https://e.com/1".to_string()),
            (
                "Blue Monday (again)".to_string(),
                "https://e.com/1".to_string(),
            ),
            ("   ".to_string(), "https://e.com/2".to_string()),
            ("y".repeat(300), long_url),
        ];
        let c = serde_json::to_value(choices(found.into_iter())).unwrap();
        let c = c.as_array().unwrap();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0]["name"], "Blue Monday");
        assert_eq!(c[0]["value"], "https://e.com/1");
        assert!(c[1]["name"].as_str().unwrap().chars().count() <= 100);
        assert_eq!(c[1]["value"].as_str().unwrap().chars().count(), 100);
    }
}
