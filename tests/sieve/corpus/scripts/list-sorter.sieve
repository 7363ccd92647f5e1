require ["fileinto", "variables", "mailbox"];
if header :matches "list-id" "*<*.lists.example.org>" { set :lower "name" "${2}"; fileinto :create "Lists/${name}"; stop; }
if exists "list-unsubscribe" { fileinto "Newsletters"; }
