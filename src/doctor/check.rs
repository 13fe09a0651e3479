//! One check's result, as `encore doctor` prints it. Apart so that the files with the
//! checks (`database.rs`, `ytdlp.rs`) and `mod.rs`, which runs them, share it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but worth knowing; does not fail the run.
    Warn,
    Fail,
    /// Not checked because an earlier check failed.
    Skip,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    pub(super) fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    pub(super) fn warn(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Self::needing(name, Status::Warn, detail.into(), fix.into())
    }
    pub(super) fn fail(
        name: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Self::needing(name, Status::Fail, detail.into(), fix.into())
    }
    /// A check with something to do about it.
    fn needing(name: &'static str, status: Status, detail: String, fix: String) -> Check {
        Check {
            name,
            status,
            detail,
            fix: Some(fix),
        }
    }
    pub(super) fn skip(name: &'static str, why: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Skip,
            detail: why.into(),
            fix: None,
        }
    }
}
