/** Types of binding.js (plain JavaScript so that Node scripts import it as is). */
export declare const CAPTURES_BINDING: "MIRROR_CAPTURES";
