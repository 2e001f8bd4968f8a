//! One module per stage's command line, so each stage's flags and dispatch live with nothing else.

pub mod eval;
pub mod serve;
pub mod train;
