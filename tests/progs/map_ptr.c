/* Map pointers read as kernel objects: the struct bpf_map (an array map's struct bpf_array)
 * behind &map, through CO-RE, as the kernel's map_ptr selftests do. Each field read lands in
 * `fields` (index = FIELD_*), so a run shows what the program saw. */
#include "bpf_helpers.h"

struct bpf_map {
	enum bpf_map_type map_type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
} __attribute__((preserve_access_index));

struct bpf_array {
	struct bpf_map map;
	__u32 elem_size;
	__u32 index_mask;
} __attribute__((preserve_access_index));

enum {
	FIELD_ARRAY_MAX_ENTRIES,
	FIELD_ARRAY_KEY_SIZE,
	FIELD_ARRAY_VALUE_SIZE,
	FIELD_ARRAY_MAP_TYPE,
	FIELD_ARRAY_ELEM_SIZE,
	FIELD_ARRAY_INDEX_MASK,
	FIELD_HASH_MAX_ENTRIES,
	FIELD_HASH_MAP_TYPE,
	FIELD_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __u64);
} m_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 33);
	__type(key, __u32);
	__type(value, __u32);
} m_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FIELD_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} fields SEC(".maps");

static __always_inline void record(__u32 key, __u64 value)
{
	__u64 *slot = bpf_map_lookup_elem(&fields, &key);

	if (slot)
		*slot = value;
}

SEC("socket")
int map_fields(struct __sk_buff *skb)
{
	struct bpf_array *array = (struct bpf_array *)&m_array;
	struct bpf_map *hash = (struct bpf_map *)&m_hash;

	record(FIELD_ARRAY_MAX_ENTRIES, array->map.max_entries);
	record(FIELD_ARRAY_KEY_SIZE, array->map.key_size);
	record(FIELD_ARRAY_VALUE_SIZE, array->map.value_size);
	record(FIELD_ARRAY_MAP_TYPE, array->map.map_type);
	record(FIELD_ARRAY_ELEM_SIZE, array->elem_size);
	record(FIELD_ARRAY_INDEX_MASK, array->index_mask);
	record(FIELD_HASH_MAX_ENTRIES, hash->max_entries);
	record(FIELD_HASH_MAP_TYPE, hash->map_type);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
