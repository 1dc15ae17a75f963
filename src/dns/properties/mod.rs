//! Property tests over the whole query path, kept above the modules they exercise: the fast
//! path gives the bytes the general path gives (`fast_path`), and a forwarding-cache hit gives a
//! client the bytes a miss would (`per_client_cache`).

mod fast_path;
mod per_client_cache;
