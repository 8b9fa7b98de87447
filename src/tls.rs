//! Cluster PKI and rustls configurations.
