-- Escapes its file: refused by the authorizer, which the load's reason names.
ATTACH DATABASE ':memory:' AS m;
