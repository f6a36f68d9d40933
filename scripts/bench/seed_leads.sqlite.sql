-- seed_leads.sqlite.sql: :n leads straight into a migrated SQLite database, for the list bench
-- (scripts/bench.sh). Names "<First> <Last>" (26 first names, one per initial letter, and 20 last
-- names), unique emails and phones (60 country codes), statuses new 50 %, contacted 30 %,
-- replied 15 %, converted 4 %, dead 1 %, created 15 s apart in pairs (ties on created_at, so
-- the keyset's seq tie-break is exercised), oldest first. Run with one named parameter :n.
INSERT INTO leads (id, name, email, phone, status, created_at, updated_at, email_norm, phone_norm,
                   name_lower)
WITH RECURSIVE
    k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < :n),
    p(i, name, status, at) AS (
        SELECT i,
               json_extract('["Ana","Bruno","Carla","Diego","Elena","Fabio","Gina","Hugo","Ines",' ||
                            '"Joao","Karin","Luis","Marta","Nuno","Olga","Pedro","Quinn","Rita",' ||
                            '"Sara","Tiago","Uma","Vera","Walter","Xavier","Yara","Zoe"]',
                            '$[' || (i % 26) || ']') || ' ' ||
               json_extract('["Silva","Santos","Ferreira","Pereira","Oliveira","Costa",' ||
                            '"Rodrigues","Martins","Jesus","Sousa","Fernandes","Goncalves",' ||
                            '"Gomes","Lopes","Marques","Alves","Almeida","Ribeiro","Pinto",' ||
                            '"Carvalho"]', '$[' || (i / 26 % 20) || ']'),
               CASE WHEN i % 100 < 50 THEN 'new' WHEN i % 100 < 80 THEN 'contacted'
                    WHEN i % 100 < 95 THEN 'replied' WHEN i % 100 < 99 THEN 'converted'
                    ELSE 'dead' END,
               1735689600000 + (i / 2) * 15000
        FROM k)
SELECT printf('%08x-0000-7000-8000-%012x', i, i), name,
       replace(lower(name), ' ', '.') || i || '@example.com',
       '+' || (30 + i % 60) || ' ' || printf('%09d', i), status, at, at,
       replace(lower(name), ' ', '.') || i || '@example.com',
       (30 + i % 60) || printf('%09d', i), lower(name)
FROM p;
