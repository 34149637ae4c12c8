//! The learning-rate schedule and the stage rule of the official `train.py`.
use crate::bayes_pfl::head::Stage;

/// `transformers.get_cosine_schedule_with_warmup` (one half cycle): the multiplier at scheduler
/// step `step` is `step / max(1, warmup)` during the warm-up, then
/// `max(0, ½·(1 + cos(π·progress)))` with `progress = (step − warmup)/max(1, total − warmup)`.
/// The official loop steps the scheduler after each optimiser step, so iteration i (from 0) runs
/// at `multiplier(i)`: the very first iteration has rate 0 whenever there is a warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CosineWarmup {
    /// Warm-up steps (`int(0.1 · iterations per epoch · epochs)`).
    pub warmup: usize,
    /// Total steps (`iterations per epoch · epochs`).
    pub total: usize,
}

impl CosineWarmup {
    /// The official schedule for `iterations_per_epoch` and `epochs` (30).
    pub fn official(iterations_per_epoch: usize, epochs: usize) -> Self {
        let total = iterations_per_epoch * epochs;
        Self { warmup: (0.1 * total as f64) as usize, total }
    }

    /// The multiplier of the base learning rates at scheduler step `step`.
    pub fn multiplier(&self, step: usize) -> f64 {
        if step < self.warmup {
            return step as f64 / self.warmup.max(1) as f64;
        }
        let progress = (step - self.warmup) as f64 / self.total.saturating_sub(self.warmup).max(1) as f64;
        (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
    }
}

/// What to do after an epoch's validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochDecision {
    /// The validation metric reached a new best (ties count): cache the weights.
    Improved,
    /// No improvement; keep training in the same stage.
    Continue,
    /// Restore the cached best weights and train stage 2 from the next epoch.
    SwitchToStageTwo,
    /// Stop training.
    Stop,
}

/// How the stages are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagePolicy {
    /// The official rule: validate after every epoch (stage 1 on pixel AP, stage 2 on image AP);
    /// on the 4th consecutive epoch without improvement (the counter already at 3), stage 1
    /// restores its best weights and switches, stage 2 stops. The counter is reset on every
    /// improvement; the best stage-2 value starts at 0, so the first stage-2 epoch improves.
    /// (It validates on classes of the target domain, which leaks target information.)
    Official {
        /// Non-improving epochs tolerated before acting (3).
        patience: usize,
    },
    /// A fixed schedule that needs no validation: stage 1 for the first `stage_one_epochs`
    /// epochs, then stage 2 (with the last stage-1 weights).
    Fixed {
        /// Number of stage-1 epochs.
        stage_one_epochs: usize,
    },
}

/// The stage state machine of the training loop.
#[derive(Debug, Clone, PartialEq)]
pub struct StageController {
    /// Policy.
    pub policy: StagePolicy,
    /// Current stage.
    pub stage: Stage,
    /// Best stage-1 pixel AP so far.
    pub best_pixel: f64,
    /// Best stage-2 image AP so far.
    pub best_image: f64,
    /// Consecutive epochs without improvement.
    pub patience: usize,
    /// Epochs finished.
    pub epochs: usize,
}

impl StageController {
    /// Starts in stage 1.
    pub fn new(policy: StagePolicy) -> Self {
        Self { policy, stage: Stage::One, best_pixel: 0.0, best_image: 0.0, patience: 0, epochs: 0 }
    }

    /// Whether this policy needs the per-epoch validation metrics.
    pub fn needs_validation(&self) -> bool {
        matches!(self.policy, StagePolicy::Official { .. })
    }

    /// Records an epoch with its validation metrics (mean per-class pixel AP and image AP; ignored
    /// by the fixed policy) and says what to do. The caller saves that epoch's checkpoint with
    /// the stage it was trained in *before* acting on the decision, as the official loop does.
    pub fn end_epoch(&mut self, pixel_ap: f64, image_ap: f64) -> EpochDecision {
        self.epochs += 1;
        match self.policy {
            StagePolicy::Fixed { stage_one_epochs } => {
                if self.stage == Stage::One && self.epochs >= stage_one_epochs {
                    self.stage = Stage::Two;
                    return EpochDecision::SwitchToStageTwo;
                }
                EpochDecision::Continue
            }
            StagePolicy::Official { patience } => {
                let (value, best) = match self.stage {
                    Stage::One => (pixel_ap, &mut self.best_pixel),
                    Stage::Two => (image_ap, &mut self.best_image),
                };
                if value >= *best {
                    *best = value;
                    self.patience = 0;
                    return EpochDecision::Improved;
                }
                let act = self.patience == patience;
                self.patience += 1;
                match (act, self.stage) {
                    (false, _) => EpochDecision::Continue,
                    (true, Stage::One) => {
                        self.stage = Stage::Two;
                        EpochDecision::SwitchToStageTwo
                    }
                    (true, Stage::Two) => EpochDecision::Stop,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_rule_switches_on_the_fourth_bad_epoch_and_stops_later() {
        let mut c = StageController::new(StagePolicy::Official { patience: 3 });
        assert_eq!(c.end_epoch(0.30, 0.0), EpochDecision::Improved);
        assert_eq!(c.end_epoch(0.30, 0.0), EpochDecision::Improved, "ties improve");
        for _ in 0..3 {
            assert_eq!(c.end_epoch(0.20, 0.9), EpochDecision::Continue);
        }
        assert_eq!(c.end_epoch(0.29, 0.9), EpochDecision::SwitchToStageTwo);
        assert_eq!(c.stage, Stage::Two);
        // The first stage-2 epoch always improves (best starts at 0).
        assert_eq!(c.end_epoch(0.0, 0.10), EpochDecision::Improved);
        assert_eq!(c.end_epoch(0.0, 0.05), EpochDecision::Continue);
        assert_eq!(c.end_epoch(0.0, 0.12), EpochDecision::Improved);
        for _ in 0..3 {
            assert_eq!(c.end_epoch(0.0, 0.11), EpochDecision::Continue);
        }
        assert_eq!(c.end_epoch(0.0, 0.11), EpochDecision::Stop);
    }

    #[test]
    fn fixed_policy_switches_after_the_given_epochs() {
        let mut c = StageController::new(StagePolicy::Fixed { stage_one_epochs: 2 });
        assert!(!c.needs_validation());
        assert_eq!(c.end_epoch(f64::NAN, f64::NAN), EpochDecision::Continue);
        assert_eq!(c.end_epoch(f64::NAN, f64::NAN), EpochDecision::SwitchToStageTwo);
        assert_eq!(c.end_epoch(f64::NAN, f64::NAN), EpochDecision::Continue);
    }

    #[test]
    fn schedule_shape() {
        let s = CosineWarmup::official(68, 30);
        assert_eq!((s.warmup, s.total), (204, 2040));
        assert_eq!(s.multiplier(0), 0.0);
        assert_eq!(s.multiplier(102), 0.5);
        assert_eq!(s.multiplier(204), 1.0);
        assert!(s.multiplier(2039) < 1e-5);
        let no_warmup = CosineWarmup::official(1, 5);
        assert_eq!(no_warmup.multiplier(0), 1.0);
    }
}
