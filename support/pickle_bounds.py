"""Bounds a pickle stream before it is unpickled, by reading its opcodes (pickletools.genops executes nothing).

A restricted unpickler stops a file from running code, but not from exhausting the machine: a 12-byte pickle can
declare a 2**50-byte string or a memo slot at index 2**32 (the unpickler allocates either before it notices the
file is short), and a few hundred bytes of memo references can build a structure that expands to 2**40 items when
printed, hashed or compared. So before the real unpickling, this scan follows the pickle's stack and refuses:
- a string, bytes or frame longer than what is left of the file;
- a memo slot beyond the next free one (a pickler numbers them 0, 1, 2, ...);
- a second reference (memo GET or DUP) to a list, tuple, dict, set or object: only strings, numbers and globals
  may be shared, which is all a pickler shares in a state_dict, so every container is referenced once and the
  whole structure is at most as large as the stream;
- a change to a global (BUILD or APPEND on it: the unpickler hands back the very function or class it admitted);
- nesting deeper than MAX_DEPTH, which keeps comparison and repr clear of RecursionError.
"""
import pickletools

from support.errors import first_line

MAX_DEPTH = 32  # a legacy state_dict nests 5 deep (dict, tensor, its arguments, storage id, its type)
ATOMS = {"int", "int_or_bool", "bool", "float", "bytes_or_str", "bytes", "bytearray", "buffer", "str", "None"}
GLOBALS = {"GLOBAL", "STACK_GLOBAL", "EXT1", "EXT2", "EXT4"}
MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # change their first operand in place


class Refused(ValueError):
    """Why a pickle stream is refused, in words."""


def scan(stream):
    """Read one pickle from `stream` (an in-memory binary file: its reads never allocate past its end) up to its STOP
    opcode, and raise Refused if it is not bounded as the module says. Leaves the stream just past the pickle."""
    start = stream.tell()
    stack = Stack(size=stream.seek(0, 2))
    stream.seek(start)
    try:
        for opcode, arg, position in pickletools.genops(stream):
            stack.step(opcode, arg, position)
    except Refused:
        raise
    except (ValueError, IndexError) as error:  # a damaged stream: genops' reads, or a stack that runs dry
        raise Refused(f"its pickle is truncated or damaged ({first_line(error)[:200]})") from error


class Stack:
    """The unpickler's stack as (kind, depth) pairs, kind atom, global or object; its marks (positions in the stack)
    and its memo kept apart, as the unpickler keeps them. `size`: the stream's length in bytes."""

    def __init__(self, size):
        self.size, self.items, self.marks, self.memo = size, [], [], {}

    def fence(self):
        """The first item an opcode without a mark may take: the one above the last mark."""
        return self.marks[-1] if self.marks else 0

    def step(self, opcode, arg, position):
        """Follow one opcode."""
        name, where = opcode.name, f"its pickle at byte {position}"
        if name == "FRAME" and arg > self.size - position:
            raise Refused(f"{where} declares a frame of {arg} bytes, and {self.size - position} are left")
        if name == "MARK":
            self.marks.append(len(self.items))
            return
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(self.memo) if name == "MEMOIZE" else arg
            if index > len(self.memo):
                raise Refused(f"{where} writes memo slot {index} where the next free one is {len(self.memo)}")
            self.memo[index] = self.take(1)[0]
            self.items.append(self.memo[index])
            return
        if name in ("GET", "BINGET", "LONG_BINGET", "DUP"):
            if name != "DUP" and arg not in self.memo:
                raise Refused(f"{where} reads memo slot {arg}, which it never wrote")
            shared = self.memo[arg] if name != "DUP" else self.take(1)[0]
            if shared[0] not in ("atom", "global"):
                raise Refused(f"{where} refers a second time to a list, tuple, dict or object ({name}): a weights "
                              f"file never needs that, and it lets a small file expand without bound")
            self.items += [shared] * (2 if name == "DUP" else 1)
            return
        if name == "POP" and self.marks and self.marks[-1] == len(self.items):  # as the unpickler: drops the mark
            self.marks.pop()
            return
        popped = self.take_operands(opcode.stack_before)
        if name in MUTATORS and popped[0][0] != "object":
            raise Refused(f"{where} applies {name} to a global or a plain value, which no pickler writes")
        if not opcode.stack_after:
            return
        if name in GLOBALS:
            pushed = ("global", 0)
        elif opcode.stack_after[0].name in ATOMS:
            pushed = ("atom", 0)
        elif name in MUTATORS:
            pushed = ("object", max([popped[0][1]] + [depth + 1 for _, depth in popped[1:]]))
        else:
            pushed = ("object", 1 + max((depth for _, depth in popped), default=0))
        if pushed[1] > MAX_DEPTH:
            raise Refused(f"{where} nests deeper than {MAX_DEPTH} levels")
        self.items.append(pushed)

    def take_operands(self, before):
        """The operands an opcode takes: `before` items, or with a mark among them, those under the mark that
        `before` names (the list of APPENDS, the dict of SETITEMS) and every item above it."""
        if pickletools.markobject not in before:
            return self.take(len(before))
        if not self.marks:
            raise IndexError("an opcode finds no mark on the stack")
        start = self.marks.pop() - before.index(pickletools.markobject)
        if start < self.fence():
            raise IndexError("an opcode finds too few items under its mark")
        popped = self.items[start:]
        del self.items[start:]
        return popped

    def take(self, count):
        if len(self.items) - count < self.fence():
            raise IndexError("an opcode finds too few items on the stack")
        popped = self.items[len(self.items) - count:]
        del self.items[len(self.items) - count:]
        return popped
