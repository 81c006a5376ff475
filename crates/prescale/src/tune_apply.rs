//! `[control] tune_apply`: the daemon applies its own tuning's advice, as Kubernetes
//! VPA's updater applies its recommender's. An advice that held on each half of the
//! days replayed is written into the configuration file the daemon was started with
//! (comments kept, as `prescale tune --write` writes it) and reloaded; what came of it
//! is kept ([`prescale_server::tune::Applied`]) and said as a `config` decision.
//!
//! It is not applied while an operator's pause holds the workload, nor when the file no
//! longer says what runs (edited and not reloaded: a reload would put that edit in force
//! unseen); a reload that refuses the file with the advice in it (a token file gone,
//! say) gets the file put back as it was, so the file keeps saying what runs.
//!
//! At most one advice is applied to a workload per `tune_every_s`: the tuning that
//! follows the reload (within five minutes) says whether the advice still stands, and
//! another waits for the next day's. On the same demand an advice cannot be undone by
//! the next (it costs no more and is short no longer than the settings in force, better
//! in one), but the stretch replayed moves on, and two settings nearly tied could
//! otherwise each win in turn, every five minutes.

use std::path::Path;

use prescale_core::config::Config;
use prescale_orchestrate::tune::Advice;
use prescale_server::tune::{Applied, Tuned};

use crate::Overrides;

/// Where an advice goes and how it is put in force.
pub(crate) struct Applier<'a> {
    /// The configuration file the daemon was started with.
    pub path: &'a Path,
    /// The command line's overrides, applied over the file as a reload applies them.
    pub overrides: &'a Overrides,
    /// Rereads the file and puts it in force (the daemon's reload): what changed, or
    /// why nothing did.
    pub reload: &'a dyn Fn() -> Result<serde_json::Value, String>,
}

impl Applier<'_> {
    /// Offers workload `w`'s tuning `t`, just made with `in_force` running, for
    /// applying; `paused`: an operator's pause holds the workload; `last`: what came of
    /// the offer before. `None` where it has no advice that held on each half, or one
    /// was applied less than `tune_every_s` before (there is nothing to apply yet);
    /// otherwise what came of it: written and reloaded, or why not.
    pub(crate) fn offer(
        &self,
        in_force: &Config,
        (paused, last): (bool, Option<&Applied>),
        w: &str,
        t: &Tuned,
    ) -> Option<Applied> {
        let advice = t.tuning.as_ref()?.advice.as_ref()?;
        if !advice.holds_on_each_half {
            return None;
        }
        let every_ms = in_force.control.tune_every_s as i64 * 1000;
        if last.is_some_and(|l| l.refused.is_none() && t.at < l.at + every_ms) {
            return None;
        }
        let (written, refused) = match self.write(in_force, paused, w, advice) {
            Ok(written) => (written, None),
            Err(why) => (Vec::new(), Some(why)),
        };
        Some(Applied {
            at: t.at,
            advice: advice.clone(),
            summary: t.summary.clone(),
            file: self.path.display().to_string(),
            written,
            refused,
        })
    }

    /// Writes `advice` for workload `w` into the file and reloads it: the lines
    /// changed, or why nothing was (the file as it was).
    fn write(
        &self,
        in_force: &Config,
        paused: bool,
        w: &str,
        advice: &Advice,
    ) -> Result<Vec<String>, String> {
        let shown = self.path.display();
        if paused {
            return Err(
                "an operator's pause holds the workload, and nothing of it is changed while one does; the advice is offered again at its next tuning".into(),
            );
        }
        let before =
            std::fs::read_to_string(self.path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
        let mut on_disk = Config::parse(&before, &shown.to_string())
            .map_err(|e| format!("{shown} does not load ({e}): fix it and reload"))?;
        crate::apply_overrides(&mut on_disk, self.overrides);
        if crate::reload::in_force(in_force, on_disk) != *in_force {
            return Err(format!(
                "{shown} was changed since the configuration in force was read from it, and a reload now would put that change in force unseen: reload it (or undo the change) first, or write the advice yourself with `prescale tune {w} --write {shown}`"
            ));
        }
        let written = crate::tune_cmd::write_advice(self.path, w, advice).map_err(|e| {
            if e.contains(": cannot write: ") || e.contains(": cannot replace: ") {
                format!(
                    "{e}: the daemon writes the advice beside its configuration file and renames it over it, so that directory must be writable (a Kubernetes ConfigMap's mount is not): write it where the configuration is kept (`prescale tune {w} --write FILE`), or set [control] tune_apply = false"
                )
            } else {
                e
            }
        })?;
        if let Err(e) = (self.reload)() {
            return Err(match crate::tune_cmd::replace_file(self.path, &before) {
                Ok(()) => format!(
                    "the reload refused the file with the advice written ({e}), so it is put back as it was"
                ),
                Err(p) => format!(
                    "the reload refused the file with the advice written ({e}), and it could not be put back ({p}): undo {} by hand",
                    written.join("; ")
                ),
            });
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::config::DEFAULT_TOML;
    use prescale_orchestrate::tune::{Advice, Tried, Tuning};
    use std::cell::Cell;

    /// A tuning of `w` advising `scale_down_window_s = 0`, held on each half or not.
    fn tuned(w: &str, holds: bool) -> Tuned {
        let settings = vec![("scale_down_window_s".to_string(), "0".to_string())];
        let tried = |settings: Vec<(String, String)>, cost: f64| Tried {
            settings,
            cost,
            underprovisioned_minutes: 0.0,
        };
        let advice = Advice {
            settings: settings.clone(),
            cost_less: 12.5,
            minutes_less: 0.0,
            halves: vec![(6.0, 0.0), (if holds { 6.5 } else { -1.0 }, 0.0)],
            holds_on_each_half: holds,
            toml: format!("[[workloads]]\nname = {w:?}\nscale_down_window_s = 0\n"),
        };
        let tuning = Tuning {
            steps: 576,
            hours: 48.0,
            own: tried(Vec::new(), 100.0),
            runs: vec![tried(settings, 87.5)],
            advice: Some(advice),
        };
        Tuned {
            at: 1_700_000_000_000,
            days: 7,
            summary: tuning.summary(),
            tuning: Some(tuning),
            error: None,
            fingerprint: String::new(),
        }
    }

    /// The default configuration written into a file, as the daemon runs it.
    struct Fixture {
        dir: tempfile::TempDir,
        path: std::path::PathBuf,
        /// The file's text.
        text: String,
        /// The configuration in force.
        cfg: Config,
        /// Its workload's name.
        w: String,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prescale.toml");
        let text = DEFAULT_TOML.to_string();
        std::fs::write(&path, &text).unwrap();
        let cfg = Config::load(&path).unwrap();
        let w = cfg.workloads[0].name.clone();
        Fixture {
            dir,
            path,
            text,
            cfg,
            w,
        }
    }

    impl Fixture {
        /// Offers `t` (with the configuration in force `in_force`) through an
        /// [`Applier`] on the file, with overrides `o` and `reload`.
        fn offer(
            &self,
            (o, reload): (&Overrides, &dyn Fn() -> Result<serde_json::Value, String>),
            in_force: &Config,
            paused: bool,
            w: &str,
            t: &Tuned,
        ) -> Option<Applied> {
            Applier {
                path: &self.path,
                overrides: o,
                reload,
            }
            .offer(in_force, (paused, None), w, t)
        }

        /// The file's text now.
        fn now(&self) -> String {
            std::fs::read_to_string(&self.path).unwrap()
        }
    }

    const NONE: Overrides = Overrides {
        data_dir: None,
        listen: None,
        token_file: None,
    };

    fn no_reload() -> Result<serde_json::Value, String> {
        panic!("no reload")
    }

    #[test]
    fn an_advice_that_held_is_written_into_the_file_and_reloaded() {
        let f = fixture();
        let (cfg, w) = (&f.cfg, &f.w);
        let reloads = Cell::new(0);
        let reload = || {
            reloads.set(reloads.get() + 1);
            Ok(serde_json::json!({}))
        };
        let t = tuned(w, true);
        let a = f
            .offer((&NONE, &reload), cfg, false, w, &t)
            .expect("an advice to offer");
        assert_eq!(a.refused, None, "{a:?}");
        assert_eq!(reloads.get(), 1);
        let now = Config::load(&f.path).unwrap();
        assert_eq!(now.workloads[0].scale_down_window_s, 0);
        assert_ne!(cfg.workloads[0].scale_down_window_s, 0);
        assert_eq!(
            a.written,
            vec![format!(
                "[[workloads]] {w:?}: scale_down_window_s = 0 (was {})",
                cfg.workloads[0].scale_down_window_s
            )]
        );
        // Nothing else in the file changed.
        let mut back = now.clone();
        back.workloads[0].scale_down_window_s = cfg.workloads[0].scale_down_window_s;
        assert_eq!(&back, cfg);
        assert_eq!(
            (a.at, a.file.as_str(), &a.advice),
            (
                t.at,
                f.path.to_str().unwrap(),
                t.tuning.as_ref().unwrap().advice.as_ref().unwrap()
            )
        );
        // Said as a decision with what was written, where, and why.
        let d = a.decision(w, None).unwrap();
        assert_eq!(
            d.reason,
            format!(
                "tune applied (control.tune_apply): wrote {} into {} and reloaded. {}",
                a.written[0],
                f.path.display(),
                t.summary
            )
        );
    }

    #[test]
    fn nothing_is_applied_where_the_advice_did_not_hold_or_is_none() {
        let f = fixture();
        let (cfg, w) = (&f.cfg, &f.w);
        let offer = |t: &Tuned| f.offer((&NONE, &no_reload), cfg, false, w, t);
        assert_eq!(offer(&tuned(w, false)), None);
        let mut none = tuned(w, true);
        none.tuning.as_mut().unwrap().advice = None;
        assert_eq!(offer(&none), None);
        let mut failed = tuned(w, true);
        failed.tuning = None;
        assert_eq!(offer(&failed), None);
        assert_eq!(f.now(), f.text);
    }

    #[test]
    fn a_pause_or_a_file_edited_since_the_last_reload_keeps_the_file_as_it_is() {
        let f = fixture();
        let (cfg, w) = (&f.cfg, &f.w);
        let t = tuned(w, true);
        let a = f.offer((&NONE, &no_reload), cfg, true, w, &t).unwrap();
        assert!(
            a.refused
                .as_deref()
                .unwrap()
                .starts_with("an operator's pause holds the workload"),
            "{a:?}"
        );
        assert!(a.written.is_empty());
        assert_eq!(f.now(), f.text);
        // Said once: the same refusal of the same advice at the next tuning is not
        // logged again, another is.
        let d = a.decision(w, None).unwrap();
        assert_eq!(
            d.reason,
            format!(
                "tune not applied (control.tune_apply): scale_down_window_s = 0: {}",
                a.refused.as_deref().unwrap()
            )
        );
        assert_eq!(a.decision(w, Some(&a)), None);
        // Someone edited the file and did not reload: the edit is not put in force
        // behind their back, and the file is left as they left it.
        let edited = f.text.replacen("\ninterval_s = 15", "\ninterval_s = 30", 1);
        assert_ne!(edited, f.text);
        std::fs::write(&f.path, &edited).unwrap();
        let b = f.offer((&NONE, &no_reload), cfg, false, w, &t).unwrap();
        let why = b.refused.as_deref().unwrap();
        assert!(
            why.contains("was changed since the configuration in force was read from it")
                && why.contains(&format!("prescale tune {w} --write")),
            "{why}"
        );
        assert_eq!(f.now(), edited);
        assert!(b.decision(w, Some(&a)).is_some());
        // The command line's overrides are not an edit.
        std::fs::write(&f.path, &f.text).unwrap();
        let o = Overrides {
            data_dir: Some(f.dir.path().join("data")),
            ..NONE
        };
        let mut running = cfg.clone();
        crate::apply_overrides(&mut running, &o);
        let ok = || Ok(serde_json::json!({}));
        let c = f.offer((&o, &ok), &running, false, w, &t).unwrap();
        assert_eq!(c.refused, None, "{c:?}");
    }

    #[test]
    fn a_reload_that_refuses_the_file_gets_it_put_back() {
        let f = fixture();
        let (cfg, w) = (&f.cfg, &f.w);
        let reload = || Err("server.token_file: cannot read /run/secrets/token".to_string());
        let a = f
            .offer((&NONE, &reload), cfg, false, w, &tuned(w, true))
            .unwrap();
        assert_eq!(
            a.refused.as_deref(),
            Some("the reload refused the file with the advice written (server.token_file: cannot read /run/secrets/token), so it is put back as it was")
        );
        assert_eq!(f.now(), f.text);
        // A workload the file has no entry for: nothing written, saying so.
        let b = f
            .offer(
                (&NONE, &no_reload),
                cfg,
                false,
                "ghost",
                &tuned("ghost", true),
            )
            .unwrap();
        assert!(
            b.refused
                .as_deref()
                .unwrap()
                .contains("no [[workloads]] entry with name = \"ghost\""),
            "{b:?}"
        );
        assert_eq!(f.now(), f.text);
    }

    #[test]
    fn a_file_that_cannot_be_written_is_left_as_it_is_saying_where_to_write_it() {
        let f = fixture();
        let (cfg, w) = (&f.cfg, &f.w);
        // As a read-only mount would (the tests run as root, which writes anything): the
        // new text cannot be written beside the file.
        let beside = f.dir.path().join(".prescale.toml.prescale-tune");
        std::fs::create_dir(&beside).unwrap();
        let a = f
            .offer((&NONE, &no_reload), cfg, false, w, &tuned(w, true))
            .unwrap();
        let why = a.refused.as_deref().unwrap();
        assert!(
            why.starts_with(&format!("{}: cannot write: ", beside.display()))
                && why.contains(
                    "so that directory must be writable (a Kubernetes ConfigMap's mount is not)"
                )
                && why.contains(&format!("`prescale tune {w} --write FILE`")),
            "{why}"
        );
        assert!(a.written.is_empty());
        assert_eq!(f.now(), f.text);
        assert!(beside.is_dir());
    }

    #[test]
    fn one_advice_is_applied_a_workload_per_tuning_period() {
        let f = fixture();
        let (cfg, w) = (&f.cfg, &f.w);
        let ok = || Ok(serde_json::json!({}));
        let applier = Applier {
            path: &f.path,
            overrides: &NONE,
            reload: &ok,
        };
        let t = tuned(w, true);
        let first = applier.offer(cfg, (false, None), w, &t).unwrap();
        assert_eq!(first.refused, None, "{first:?}");
        let in_force = Config::load(&f.path).unwrap();
        // Five minutes later (the tuning after the reload), another advice waits.
        let mut next = tuned(w, true);
        next.at = t.at + 300_000;
        let before = f.now();
        assert_eq!(
            applier.offer(&in_force, (false, Some(&first)), w, &next),
            None
        );
        assert_eq!(f.now(), before);
        // After a refusal it is not held back: nothing was applied.
        let refused = Applied {
            refused: Some("paused".into()),
            ..first.clone()
        };
        let again = applier.offer(&in_force, (false, Some(&refused)), w, &next);
        assert!(again.is_some());
        // A tuning period after the last applied, it is offered again.
        next.at = t.at + in_force.control.tune_every_s as i64 * 1000;
        let later = applier.offer(&in_force, (false, Some(&first)), w, &next);
        assert!(later.is_some(), "a day later");
    }
}
