CREATE TABLE r (v int);
