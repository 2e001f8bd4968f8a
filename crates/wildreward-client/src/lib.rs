//! The scoring client: talks to `/get_reward` and `/score` of a `wildreward serve` endpoint (or any
//! server speaking the reference's wire), for `wildreward eval --endpoint` and `online-dpo`.
