keep;
/* no end
