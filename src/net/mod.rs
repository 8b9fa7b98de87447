//! The shared listener layer.
