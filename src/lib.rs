//! tickcast
