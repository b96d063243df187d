DROP TABLE secret_key;
