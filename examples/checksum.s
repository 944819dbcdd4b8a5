; The Internet checksum (RFC 1071) of the input memory, in the LLVM/kernel syntax.
; r1 = address of the input, r2 = its length in bytes. Returns the checksum in r0.
    r0 = 0
    r3 = 0
loop:
    r4 = r3
    r4 += 1
    if r4 >= r2 goto tail
    r5 = r1
    r5 += r3
    r4 = *(u16 *)(r5 + 0)
    r4 = be16 r4
    r0 += r4
    r3 += 2
    goto loop
tail:
    if r3 >= r2 goto fold
    r5 = r1
    r5 += r3
    r4 = *(u8 *)(r5 + 0)
    r4 <<= 8
    r0 += r4
fold:
    r4 = r0
    r4 >>= 16
    if r4 == 0 goto done
    r0 &= 0xffff
    r0 += r4
    goto fold
done:
    r0 ^= 0xffff
    exit
