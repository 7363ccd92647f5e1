require ["include"];
include :global "corporate";
keep;
