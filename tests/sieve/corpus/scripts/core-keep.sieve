# Nothing but an explicit keep.
keep;
