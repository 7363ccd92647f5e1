"""The ground floor every package that keeps state shares: the LMDB
environment (`xmail.db.environment.IndexEnvironment`) of the store, the
directory and the queue, and the versioned value codec of their records
(`xmail.db.codec`).  Nothing here imports another xmail package."""
