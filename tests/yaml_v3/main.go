// Reads a YAML document on stdin with gopkg.in/yaml.v3 into interface{}, as the Pulumi CLI reads a stack
// file, and prints it as JSON with each scalar's Go type (so 1 and 1.0 stay apart), or "ERROR: ...".
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

func main() {
	data, _ := io.ReadAll(os.Stdin)
	var document interface{}
	if err := yaml.Unmarshal(data, &document); err != nil {
		fmt.Println("ERROR:", err)
		return
	}
	out, _ := json.Marshal(typed(document))
	fmt.Println(string(out))
}

func typed(value interface{}) interface{} {
	switch v := value.(type) {
	case map[string]interface{}:
		m := map[string]interface{}{}
		for k, e := range v {
			m[k] = typed(e)
		}
		return map[string]interface{}{"map": m}
	case map[interface{}]interface{}:
		return map[string]interface{}{"map with keys that are not text": len(v)}
	case []interface{}:
		list := []interface{}{}
		for _, e := range v {
			list = append(list, typed(e))
		}
		return map[string]interface{}{"seq": list}
	case string:
		return map[string]interface{}{"str": v}
	case bool:
		return map[string]interface{}{"bool": v}
	case nil:
		return map[string]interface{}{"null": nil}
	case int, int64, uint64:
		return map[string]interface{}{"int": fmt.Sprint(v)}
	case float64:
		return map[string]interface{}{"float": fmt.Sprint(v)}
	case time.Time:
		return map[string]interface{}{"timestamp": v.String()}
	}
	return map[string]interface{}{"other": fmt.Sprint(value)}
}
