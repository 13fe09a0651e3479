//! What a link lists: the tracks to look for, and the service it came from.

use std::time::Duration;

/// One track a link names, to be found elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedTrack {
    pub title: String,
    pub artists: Vec<String>,
    pub duration: Option<Duration>,
}

impl WantedTrack {
    /// `Artist, Other - Title`, what is searched for.
    pub fn query(&self) -> String {
        match self.artists.is_empty() {
            true => self.title.clone(),
            false => format!("{} - {}", self.artists.join(", "), self.title),
        }
    }
}

/// What a link lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub title: String,
    pub tracks: Vec<WantedTrack>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Spotify,
    AppleMusic,
    Deezer,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Spotify => "Spotify",
            Service::AppleMusic => "Apple Music",
            Service::Deezer => "Deezer",
        }
    }
}
