# Writes FILE into OUT as `const char SYMBOL[]` (its bytes and a NUL) and `const size_t
# SYMBOL_len` (its length without the NUL): one file compiled into the binary, the way
# embed_sql.cmake and embed_lua.cmake compile in the migrations and the Lua scripts.
file(READ ${FILE} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
set(body "/* generated from ${FILE} by cmake/embed_file.cmake: do not edit */\n#include <stddef.h>\n\n")
string(APPEND body "const char ${SYMBOL}[] = {${hex} 0};\nconst size_t ${SYMBOL}_len = ${len};\n")
file(WRITE ${OUT}.tmp "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
