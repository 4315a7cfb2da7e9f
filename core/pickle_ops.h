/* SPDX-License-Identifier: MIT */
/*
 * The pickle opcodes, once: their names, bytes and how their arguments are
 * encoded, as CPython's Lib/pickletools.py documents them (protocols 0 to
 * 5). Private to core/pickle*.c.
 *
 * PK_OPS(X) calls X(name, byte, argument kind, size, what) for each opcode.
 * From it come enum pk_op (PK_MARK = '(' ...), which the machine's step()
 * switches on, and pk_ops[], the table the argument decoder, the scanner
 * and the error messages read. `size` is the width in bytes of a fixed
 * argument or of a length field; `what` names the argument in "needs 4
 * bytes of int" messages.
 */
#ifndef ZEROFS_PICKLE_OPS_H
#define ZEROFS_PICKLE_OPS_H

#include <stdint.h>

enum pk_arg_kind {
	PK_ARG_NONE,
	PK_ARG_UINT,  /* little-endian unsigned of `size` bytes */
	PK_ARG_SINT,  /* little-endian two's complement of `size` bytes */
	PK_ARG_F64BE, /* big-endian binary64 */
	PK_ARG_DATA,  /* unsigned length of `size` bytes, then that many bytes */
	PK_ARG_SDATA, /* signed length of `size` bytes (< 0 is an error), bytes */
	PK_ARG_LINE,  /* text up to '\n' */
	PK_ARG_LINE2, /* two such lines (module, name) */
};

#define PK_OPS(X)                                        \
	/* protocol 0 */                                 \
	X(MARK, '(', NONE, 0, NULL)                      \
	X(STOP, '.', NONE, 0, NULL)                      \
	X(POP, '0', NONE, 0, NULL)                       \
	X(POP_MARK, '1', NONE, 0, NULL)                  \
	X(DUP, '2', NONE, 0, NULL)                       \
	X(FLOAT, 'F', LINE, 0, NULL)                     \
	X(INT, 'I', LINE, 0, NULL)                       \
	X(LONG, 'L', LINE, 0, NULL)                      \
	X(NONE, 'N', NONE, 0, NULL)                      \
	X(PERSID, 'P', LINE, 0, NULL)                    \
	X(REDUCE, 'R', NONE, 0, NULL)                    \
	X(STRING, 'S', LINE, 0, NULL)                    \
	X(UNICODE, 'V', LINE, 0, NULL)                   \
	X(APPEND, 'a', NONE, 0, NULL)                    \
	X(BUILD, 'b', NONE, 0, NULL)                     \
	X(GLOBAL, 'c', LINE2, 0, NULL)                   \
	X(DICT, 'd', NONE, 0, NULL)                      \
	X(GET, 'g', LINE, 0, NULL)                       \
	X(INST, 'i', LINE2, 0, NULL)                     \
	X(LIST, 'l', NONE, 0, NULL)                      \
	X(OBJ, 'o', NONE, 0, NULL)                       \
	X(PUT, 'p', LINE, 0, NULL)                       \
	X(SETITEM, 's', NONE, 0, NULL)                   \
	X(TUPLE, 't', NONE, 0, NULL)                     \
	/* protocol 1 */                                 \
	X(BINFLOAT, 'G', F64BE, 8, "float")              \
	X(BININT, 'J', SINT, 4, "int")                   \
	X(BININT1, 'K', UINT, 1, "int")                  \
	X(BININT2, 'M', UINT, 2, "int")                  \
	X(BINPERSID, 'Q', NONE, 0, NULL)                 \
	X(BINSTRING, 'T', SDATA, 4, "length")            \
	X(SHORT_BINSTRING, 'U', DATA, 1, "length")       \
	X(BINUNICODE, 'X', DATA, 4, "length")            \
	X(EMPTY_LIST, ']', NONE, 0, NULL)                \
	X(APPENDS, 'e', NONE, 0, NULL)                   \
	X(BINGET, 'h', UINT, 1, "memo index")            \
	X(LONG_BINGET, 'j', UINT, 4, "memo index")       \
	X(BINPUT, 'q', UINT, 1, "memo index")            \
	X(LONG_BINPUT, 'r', UINT, 4, "memo index")       \
	X(SETITEMS, 'u', NONE, 0, NULL)                  \
	X(EMPTY_TUPLE, ')', NONE, 0, NULL)               \
	X(EMPTY_DICT, '}', NONE, 0, NULL)                \
	/* protocol 2 */                                 \
	X(PROTO, 0x80, UINT, 1, "protocol")              \
	X(NEWOBJ, 0x81, NONE, 0, NULL)                   \
	X(EXT1, 0x82, UINT, 1, "extension code")         \
	X(EXT2, 0x83, UINT, 2, "extension code")         \
	X(EXT4, 0x84, UINT, 4, "extension code")         \
	X(TUPLE1, 0x85, NONE, 0, NULL)                   \
	X(TUPLE2, 0x86, NONE, 0, NULL)                   \
	X(TUPLE3, 0x87, NONE, 0, NULL)                   \
	X(NEWTRUE, 0x88, NONE, 0, NULL)                  \
	X(NEWFALSE, 0x89, NONE, 0, NULL)                 \
	X(LONG1, 0x8a, DATA, 1, "length")                \
	X(LONG4, 0x8b, SDATA, 4, "length")               \
	/* protocol 3 */                                 \
	X(BINBYTES, 'B', DATA, 4, "length")              \
	X(SHORT_BINBYTES, 'C', DATA, 1, "length")        \
	/* protocol 4 */                                 \
	X(SHORT_BINUNICODE, 0x8c, DATA, 1, "length")     \
	X(BINUNICODE8, 0x8d, DATA, 8, "length")          \
	X(BINBYTES8, 0x8e, DATA, 8, "length")            \
	X(EMPTY_SET, 0x8f, NONE, 0, NULL)                \
	X(ADDITEMS, 0x90, NONE, 0, NULL)                 \
	X(FROZENSET, 0x91, NONE, 0, NULL)                \
	X(NEWOBJ_EX, 0x92, NONE, 0, NULL)                \
	X(STACK_GLOBAL, 0x93, NONE, 0, NULL)             \
	X(MEMOIZE, 0x94, NONE, 0, NULL)                  \
	X(FRAME, 0x95, UINT, 8, "frame length")          \
	/* protocol 5 */                                 \
	X(BYTEARRAY8, 0x96, DATA, 8, "length")           \
	X(NEXT_BUFFER, 0x97, NONE, 0, NULL)              \
	X(READONLY_BUFFER, 0x98, NONE, 0, NULL)

enum pk_op {
#define PK_OP_ENUM(name, byte, kind, size, what) PK_##name = byte,
	PK_OPS(PK_OP_ENUM)
#undef PK_OP_ENUM
};

struct pk_opinfo {
	const char *name;	/* NULL: the byte is no opcode */
	enum pk_arg_kind kind;
	uint8_t size;
	const char *what;
};

/* Indexed by the opcode byte. */
extern const struct pk_opinfo pk_ops[256];

#endif /* ZEROFS_PICKLE_OPS_H */
