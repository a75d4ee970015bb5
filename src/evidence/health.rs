//! The evidence sink's health rows for `callguard doctor`: the evidence folder (there or
//! creatable, private, writable), its free space against `evidence.min_free_mb`, and the
//! signing key. Read-only: the folder is checked where it is, never made here (the recorder
//! makes it, mode 0700, on the first call).

use std::path::Path;

use crate::config::{EvidenceSource, Language};
use crate::health::{Check, Status, say};

use super::EvidenceOptions;

/// The `evidence`, `disk` and `signing-key` rows.
pub fn checks(opts: &EvidenceOptions, lang: Language) -> Vec<Check> {
    let mut rows = folder(opts, lang);
    rows.push(check_key(&opts.data_dir, lang));
    rows
}

/// The evidence folder and its free space.
fn folder(opts: &EvidenceOptions, lang: Language) -> Vec<Check> {
    if opts.source == EvidenceSource::Off {
        return vec![Check::pass(
            "evidence",
            say(
                lang,
                "録音しません（evidence.source = off）",
                "recording off (evidence.source = off)",
            ),
        )];
    }
    let dir = &opts.root;
    let shown = dir.display().to_string();
    let fix_owned = say(
        lang,
        "evidence.dir には、担当者のユーザーが所有するローカルディスク上のフォルダーを指定してください",
        "set evidence.dir to a folder on a local disk the agent's user owns",
    );
    let Some(base) = dir.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf) else {
        return vec![Check::new(
            "evidence",
            Status::Fail,
            say(
                lang,
                format!("{shown}：親フォルダーがありません"),
                format!("{shown}: no existing parent folder"),
            ),
            fix_owned,
        )];
    };
    let mut checks = vec![if &base != dir {
        match rustix::fs::access(
            &base,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        ) {
            Ok(()) => Check::pass(
                "evidence",
                say(
                    lang,
                    format!(
                        "{shown}：まだありません。最初に録音した通話で作られます（モード 0700）"
                    ),
                    format!("{shown}: not there yet; the first recorded call makes it (mode 0700)"),
                ),
            ),
            Err(e) => Check::new(
                "evidence",
                Status::Fail,
                say(
                    lang,
                    format!(
                        "{shown}：作れません。{} に書き込めません（{e}）",
                        base.display()
                    ),
                    format!(
                        "{shown}: cannot be made: {} is not writable ({e})",
                        base.display()
                    ),
                ),
                fix_owned,
            ),
        }
    } else {
        let probe = dir.join(format!(".callguard-doctor-{}", std::process::id()));
        let writable = crate::fsutil::create_new_private_file(&probe).and_then(|mut f| {
            use std::io::Write;
            f.write_all(b"probe")?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir).map_or(0o700, |m| m.permissions().mode() & 0o777)
        };
        match writable {
            Ok(()) if mode & 0o077 != 0 => Check::new(
                "evidence",
                Status::Warn,
                say(
                    lang,
                    format!(
                        "{shown}：書き込めますが、ほかのユーザーにも開いています（モード {mode:o}）"
                    ),
                    format!("{shown}: writable, but open to other users (mode {mode:o})"),
                ),
                say(
                    lang,
                    format!("chmod 700 {shown}（次の通話で録音側も権限を絞ります）"),
                    format!("chmod 700 {shown} (the recorder also tightens it at the next call)"),
                ),
            ),
            Ok(()) => Check::pass(
                "evidence",
                say(
                    lang,
                    format!("{shown}：書き込めます（モード 0700）"),
                    format!("{shown}: writable, mode 0700"),
                ),
            ),
            Err(e) => Check::new(
                "evidence",
                Status::Fail,
                say(
                    lang,
                    format!("{shown}：書き込めません：{e}"),
                    format!("{shown}: not writable: {e}"),
                ),
                say(
                    lang,
                    format!(
                        "{shown} の所有者を担当者のユーザーにしてください（chown -R USER {shown}）"
                    ),
                    format!("give the agent's user ownership of {shown} (chown -R USER {shown})"),
                ),
            ),
        }
    }];
    checks.push(match rustix::fs::statvfs(&base) {
        Ok(st) => disk_verdict(
            st.f_bavail.saturating_mul(st.f_frsize) / (1024 * 1024),
            opts.min_free_mb,
            lang,
        ),
        Err(e) => Check::new(
            "disk",
            Status::Warn,
            say(
                lang,
                format!("{shown} の空き容量がわかりません：{e}"),
                format!("cannot tell the free space of {shown}: {e}"),
            ),
            say(
                lang,
                "evidence.dir のファイルシステムを確かめてください",
                "check the file system of evidence.dir",
            ),
        ),
    });
    checks
}

/// Fail below `evidence.min_free_mb` (calls would not be recorded), warn below twice that.
pub fn disk_verdict(free_mb: u64, min_free_mb: u64, lang: Language) -> Check {
    let detail = say(
        lang,
        format!("空き {free_mb} MB（evidence.min_free_mb = {min_free_mb}）"),
        format!("{free_mb} MB free (evidence.min_free_mb = {min_free_mb})"),
    );
    if free_mb < min_free_mb {
        Check::new(
            "disk",
            Status::Fail,
            say(
                lang,
                format!("{detail}：新しい通話は録音されません"),
                format!("{detail}: new calls are not recorded"),
            ),
            say(
                lang,
                "ディスクの空きを作るか、古い証拠を集めてこの端末から移すか、evidence.dir を大きいディスクにしてください",
                "free disk space, collect and move old evidence off this machine, or set evidence.dir to a larger disk",
            ),
        )
    } else if free_mb < min_free_mb.saturating_mul(2) {
        Check::new(
            "disk",
            Status::Warn,
            say(
                lang,
                format!("{detail}：まもなく録音が止まります"),
                format!("{detail}: recording stops soon"),
            ),
            say(
                lang,
                "古い証拠を集めてこの端末から移すか、ディスクの空きを作ってください",
                "collect and move old evidence off this machine, or free disk space",
            ),
        )
    } else {
        Check::pass("disk", detail)
    }
}

/// `<data dir>/keys/evidence.key`: missing is fine (made on first run), otherwise private.
pub fn check_key(data_dir: &Path, lang: Language) -> Check {
    use std::os::unix::fs::MetadataExt;
    const NAME: &str = "signing-key";
    let (path, _) = super::keys::key_paths(data_dir);
    let shown = path.display().to_string();
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::new(
                NAME,
                Status::Warn,
                say(
                    lang,
                    format!("{shown}：まだありません。最初の起動で作られます"),
                    format!("{shown}: not there yet; created on first run"),
                ),
                say(
                    lang,
                    "デーモンを一度起動してから（systemctl --user start callguard）、doctor をもう一度実行してください",
                    "start the daemon once (systemctl --user start callguard), then run doctor again",
                ),
            );
        }
        Err(e) => {
            return Check::new(
                NAME,
                Status::Fail,
                format!("{shown}: {e}"),
                say(
                    lang,
                    "データフォルダーは担当者のユーザーが所有している必要があります",
                    "the agent's user must own its data folder",
                ),
            );
        }
    };
    if !meta.file_type().is_file() {
        return Check::new(
            NAME,
            Status::Fail,
            say(
                lang,
                format!("{shown}：通常のファイルではありません"),
                format!("{shown}: not a regular file"),
            ),
            say(
                lang,
                "それを取り除き、デーモンを起動して新しい鍵を作ってください（これまでの証拠は古い evidence.pub で検証できます）",
                "remove it and start the daemon to make a new key (the old evidence keeps verifying with the old evidence.pub)",
            ),
        );
    }
    let mode = meta.mode() & 0o777;
    let me = rustix::process::getuid().as_raw();
    // Someone else's key, or one others can read: either way evidence could be forged.
    let unsafe_key = if meta.uid() != me {
        Some((
            format!(
                "{shown}：所有者が uid {} で、このユーザー（{me}）ではありません",
                meta.uid()
            ),
            format!(
                "{shown}: owned by uid {}, not by this user ({me})",
                meta.uid()
            ),
            format!("chown {me} {shown}"),
        ))
    } else if mode & 0o077 != 0 {
        Some((
            format!(
                "{shown}：モード {mode:04o}：ほかのユーザーが鍵を読めるため、証拠を偽造できます"
            ),
            format!("{shown}: mode {mode:04o}: other users can read the key and forge evidence"),
            format!("chmod 600 {shown}"),
        ))
    } else {
        None
    };
    if let Some((ja, en, fix)) = unsafe_key {
        return Check::new(NAME, Status::Fail, say(lang, ja, en), fix);
    }
    match std::fs::File::open(&path) {
        Ok(_) => Check::pass(
            NAME,
            say(
                lang,
                format!("{shown}：あります（モード {mode:04o}）"),
                format!("{shown}: present, mode {mode:04o}"),
            ),
        ),
        Err(e) => Check::new(
            NAME,
            Status::Fail,
            say(
                lang,
                format!("{shown}：読めません：{e}"),
                format!("{shown}: cannot read: {e}"),
            ),
            format!("chmod 600 {shown}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_thresholds() {
        assert_eq!(disk_verdict(100, 500, Language::En).status, Status::Fail);
        assert_eq!(disk_verdict(700, 500, Language::En).status, Status::Warn);
        assert_eq!(disk_verdict(5000, 500, Language::En).status, Status::Pass);
        assert!(
            disk_verdict(100, 500, Language::Ja)
                .detail
                .contains("録音されません")
        );
    }

    #[test]
    fn key_mode_is_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_key(dir.path(), Language::En).status, Status::Warn);
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let key = keys.join("evidence.key");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = check_key(dir.path(), Language::En);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.contains("chmod 600"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(check_key(dir.path(), Language::En).status, Status::Pass);
    }
}
