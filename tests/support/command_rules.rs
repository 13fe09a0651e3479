//! Discord's rules for registering application commands ("Application Commands" in its
//! docs: names, descriptions, options, choices, limits). A bulk overwrite that breaks one
//! is refused whole with 400 50035 and the path of the first offending field.

use std::collections::HashSet;

use serde_json::Value;

/// Option types: 1 SUB_COMMAND, 2 SUB_COMMAND_GROUP, 3 STRING, 4 INTEGER, 5 BOOLEAN, 6 USER,
/// 7 CHANNEL, 8 ROLE, 9 MENTIONABLE, 10 NUMBER, 11 ATTACHMENT.
const SUB_COMMAND: u64 = 1;
const SUB_COMMAND_GROUP: u64 = 2;

type Refusal = (String, String);

fn refuse(path: String, msg: &str) -> Result<(), Refusal> {
    Err((path, msg.to_owned()))
}

fn chars(v: &Value) -> usize {
    v.as_str().map(|s| s.chars().count()).unwrap_or(0)
}

/// A CHAT_INPUT command's or an option's name: 1-32 characters, lower case where the
/// script has case, letters, digits, `-` and `_` only (Discord's regex
/// `^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$`).
fn slash_name_ok(name: &str) -> bool {
    let n = name.chars().count();
    (1..=32).contains(&n)
        && name
            .chars()
            .all(|c| c == '-' || c == '_' || (c.is_alphanumeric() && !c.is_uppercase()))
}

/// Every command of one bulk overwrite.
pub fn validate(cmds: &[Value]) -> Result<(), Refusal> {
    let count = |kind: u64| {
        cmds.iter()
            .filter(|c| c["type"].as_u64().unwrap_or(1) == kind)
            .count()
    };
    if count(1) > 100 {
        return refuse(
            String::new(),
            "Maximum number of application commands reached (100)",
        );
    }
    if count(2) > 5 || count(3) > 5 {
        return refuse(
            String::new(),
            "Maximum number of user or message commands reached (5)",
        );
    }
    let mut names = HashSet::new();
    for (i, c) in cmds.iter().enumerate() {
        let kind = c["type"].as_u64().unwrap_or(1);
        let name = c["name"].as_str().unwrap_or("");
        if !names.insert((kind, name.to_owned())) {
            return refuse(
                format!("{i}.name"),
                "Application command names must be unique",
            );
        }
        validate_command(c, kind).map_err(|(p, m)| (format!("{i}.{p}"), m))?;
    }
    Ok(())
}

fn validate_command(c: &Value, kind: u64) -> Result<(), Refusal> {
    let name = c["name"].as_str().unwrap_or("");
    match kind {
        1 => {
            if !slash_name_ok(name) {
                return refuse("name".into(), "Command name is invalid");
            }
            if !(1..=100).contains(&chars(&c["description"])) {
                return refuse("description".into(), "Must be between 1 and 100 in length.");
            }
        }
        2 | 3 => {
            if !(1..=32).contains(&name.chars().count()) {
                return refuse("name".into(), "Must be between 1 and 32 in length.");
            }
            if chars(&c["description"]) != 0 || c.get("options").is_some_and(|o| !o.is_null()) {
                return refuse(
                    "description".into(),
                    "User and message commands take no description or options",
                );
            }
        }
        _ => return refuse("type".into(), "Value is not a valid enum value."),
    }
    let options = c["options"].as_array().cloned().unwrap_or_default();
    validate_options(&options, 0)?;
    let total = name.chars().count() + chars(&c["description"]) + option_chars(&options);
    if total > 4000 {
        return refuse(
            String::new(),
            "Combined name, description and option text must be 4000 or fewer in length.",
        );
    }
    Ok(())
}

/// The characters of the options' names, descriptions and choices, counted toward the 4000.
fn option_chars(options: &[Value]) -> usize {
    options
        .iter()
        .map(|o| {
            let choices: usize = o["choices"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            chars(&c["name"])
                                + match &c["value"] {
                                    Value::String(v) => v.chars().count(),
                                    v => v.to_string().len(),
                                }
                        })
                        .sum()
                })
                .unwrap_or(0);
            let nested = option_chars(&o["options"].as_array().cloned().unwrap_or_default());
            chars(&o["name"]) + chars(&o["description"]) + choices + nested
        })
        .sum()
}

/// One level of options; `depth` 0 is the command's own, 1 a group's or sub-command's.
fn validate_options(options: &[Value], depth: u8) -> Result<(), Refusal> {
    if options.len() > 25 {
        return refuse("options".into(), "Must be 25 or fewer in length.");
    }
    let subs = options
        .iter()
        .filter(|o| matches!(o["type"].as_u64(), Some(SUB_COMMAND | SUB_COMMAND_GROUP)))
        .count();
    if subs != 0 && subs != options.len() {
        return refuse(
            "options".into(),
            "Sub-commands and groups cannot be mixed with other options",
        );
    }
    let mut names = HashSet::new();
    let mut optional_seen = false;
    for (i, o) in options.iter().enumerate() {
        let at = |k: &str| format!("options.{i}.{k}");
        let kind = o["type"].as_u64().unwrap_or(0);
        let name = o["name"].as_str().unwrap_or("");
        if !(1..=11).contains(&kind) {
            return refuse(at("type"), "Value is not a valid enum value.");
        }
        if !slash_name_ok(name) {
            return refuse(at("name"), "Option name is invalid");
        }
        if !names.insert(name.to_owned()) {
            return refuse(at("name"), "Option names must be unique");
        }
        if !(1..=100).contains(&chars(&o["description"])) {
            return refuse(at("description"), "Must be between 1 and 100 in length.");
        }
        let nested = o["options"].as_array().cloned().unwrap_or_default();
        match kind {
            SUB_COMMAND_GROUP if depth > 0 => {
                return refuse(at("type"), "A group can only be at the top level");
            }
            SUB_COMMAND if depth > 1 => {
                return refuse(at("type"), "Sub-commands cannot be nested this deep");
            }
            SUB_COMMAND_GROUP
                if nested
                    .iter()
                    .any(|n| n["type"].as_u64() != Some(SUB_COMMAND)) =>
            {
                return refuse(at("options"), "A group holds sub-commands only");
            }
            SUB_COMMAND_GROUP => {
                validate_options(&nested, depth + 1).map_err(|(p, m)| (at(&p), m))?;
                continue;
            }
            SUB_COMMAND => {
                if nested
                    .iter()
                    .any(|n| matches!(n["type"].as_u64(), Some(SUB_COMMAND | SUB_COMMAND_GROUP)))
                {
                    return refuse(at("options"), "A sub-command holds no sub-commands");
                }
                validate_options(&nested, depth + 1).map_err(|(p, m)| (at(&p), m))?;
                continue;
            }
            _ => {}
        }
        if !nested.is_empty() {
            return refuse(at("options"), "Only sub-commands and groups have options");
        }
        let required = o["required"].as_bool().unwrap_or(false);
        if required && optional_seen {
            return refuse(
                at("required"),
                "Required options must be placed before non-required options",
            );
        }
        optional_seen |= !required;
        validate_value_rules(o, kind).map_err(|(p, m)| (at(&p), m))?;
    }
    Ok(())
}

/// Choices, autocomplete, lengths, ranges and channel types: each only where its type takes it.
fn validate_value_rules(o: &Value, kind: u64) -> Result<(), Refusal> {
    let (string, integer, number) = (kind == 3, kind == 4, kind == 10);
    // serenity sends `"choices": []` and `"channel_types": []` on every option: empty is absent.
    if let Some(choices) = o["choices"].as_array().filter(|c| !c.is_empty()) {
        if !(string || integer || number) {
            return refuse(
                "choices".into(),
                "Only string, integer and number options have choices",
            );
        }
        if choices.len() > 25 {
            return refuse("choices".into(), "Must be 25 or fewer in length.");
        }
        if o["autocomplete"].as_bool() == Some(true) {
            return refuse(
                "autocomplete".into(),
                "Autocomplete cannot be set with choices",
            );
        }
        for (j, c) in choices.iter().enumerate() {
            if !(1..=100).contains(&chars(&c["name"])) {
                return refuse(
                    format!("choices.{j}.name"),
                    "Must be between 1 and 100 in length.",
                );
            }
            let typed = match &c["value"] {
                Value::String(v) => string && v.chars().count() <= 100,
                Value::Number(n) => (integer && n.is_i64()) || number,
                _ => false,
            };
            if !typed {
                return refuse(
                    format!("choices.{j}.value"),
                    "Value does not match the option's type",
                );
            }
        }
    }
    if o["autocomplete"].as_bool() == Some(true) && !(string || integer || number) {
        return refuse(
            "autocomplete".into(),
            "Only string, integer and number options autocomplete",
        );
    }
    for (k, lo) in [("min_length", 0), ("max_length", 1)] {
        if let Some(v) = o.get(k).filter(|v| !v.is_null()) {
            let ok = string && v.as_u64().is_some_and(|v| (lo..=6000).contains(&v));
            if !ok {
                return refuse(
                    k.into(),
                    "Must be between 0 and 6000, on string options only",
                );
            }
        }
    }
    for k in ["min_value", "max_value"] {
        if o.get(k).is_some_and(|v| !v.is_null()) && !(integer || number) {
            return refuse(k.into(), "Only integer and number options have a range");
        }
    }
    if let (Some(lo), Some(hi)) = (o["min_value"].as_f64(), o["max_value"].as_f64()) {
        if lo > hi {
            return refuse(
                "min_value".into(),
                "Must be less than or equal to max_value",
            );
        }
    }
    if o["channel_types"].as_array().is_some_and(|c| !c.is_empty()) && kind != 7 {
        return refuse(
            "channel_types".into(),
            "Only channel options have channel types",
        );
    }
    Ok(())
}
