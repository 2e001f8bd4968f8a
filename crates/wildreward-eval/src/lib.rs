//! `wildreward eval`: benchmark accuracy, calibration and consistency of a reward model.
