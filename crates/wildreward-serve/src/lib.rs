//! `wildreward serve`: scoring workers and the router in front of them.
