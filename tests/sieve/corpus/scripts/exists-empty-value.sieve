require "fileinto";
if exists "x-priority" { if header :is "x-priority" "" { fileinto "EmptyPrio"; } else { fileinto "Prio"; } }
