//! Semantic versions as flagd's `sem_ver` reads them (placeholder: being written).
