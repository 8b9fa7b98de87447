//! The replicated directory.
